"""Expected runtime failures as ONE line naming what failed and what to check: the vocabulary of the CLI boundary.

Every ``mdpipe`` command runs inside :func:`mdpipe.cli.main` (the bench entry points inside :func:`guarded`),
which turns a :class:`Failure` -- raised by code that knows exactly what went wrong (the start-up probes in
:mod:`mdpipe.preflight`, the gatherer giving up on refused credentials) -- or a known library exception that
:func:`explain` recognises (psycopg connection and privilege errors, librdkafka errors, a port in use, an
unreadable file) into one line on stderr and a non-zero exit status, never a traceback. Anything else is a bug
and keeps its traceback.

Exit statuses: 1 = :class:`Unavailable` (the database or broker is down or unreachable: the same command may
work later); 2 = :class:`Refused` (a password, API key or SASL login refused, a missing privilege) and
:class:`Misconfigured` (a DSN that does not parse, a missing database or topic): fix something first (also the
status of :class:`mdpipe.config.ConfigError`). The gatherer's own status 3 ("restart me") is unchanged.

The classifiers are pure functions of the exception and the configured address, so they are unit-tested with
the real libraries' messages; :func:`database_error_is_fatal` lets retry loops (sink) stop retrying what waiting
cannot fix.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

__all__ = [
    "Failure",
    "Misconfigured",
    "Refused",
    "Unavailable",
    "broker_failure",
    "broker_unanswered",
    "database_error_is_fatal",
    "database_failure",
    "describe_dsn",
    "dsn_empty",
    "explain",
    "guarded",
    "redact",
    "sink_fenced",
    "venue_refused",
]


class Failure(Exception):
    """An expected runtime failure; ``str()`` is one line: what failed, why, and what to check."""

    exit_status: ClassVar[int] = 1

    def __init__(self, what: str, detail: str = "", check: str = "") -> None:
        self.what, self.detail, self.check = what, _one_line(detail), check
        text = what + (f": {self.detail}" if self.detail else "") + (f"; check {check}" if check else "")
        super().__init__(text)


class Unavailable(Failure):
    """A service is down or unreachable (exit 1): waiting or restarting later may help."""

    exit_status = 1


class Refused(Failure):
    """Credentials or privileges refused (exit 2): retrying cannot help until they are fixed."""

    exit_status = 2


class Misconfigured(Failure):
    """An address that does not parse, a database or topic that does not exist (exit 2)."""

    exit_status = 2


_SECRET = [
    (re.compile(r"(://[^:/@\s]+:)\S*@"), r"\1***@"),  # URL userinfo password (greedy: it may hold an @)
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),  # key=value DSN password
]


def redact(text: str) -> str:
    """``text`` with DSN passwords masked (library messages may echo the connection string)."""
    for pattern, repl in _SECRET:
        text = pattern.sub(repl, text)
    return text


def _one_line(text: str) -> str:
    return redact(" ".join(str(text).split()))[:400]


# --------------------------------------------------------------------------------------------- database
def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` (user) of a DSN, without its password; ``postgres.dsn`` when it does not parse."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:
        return "postgres.dsn"
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    where = f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"
    return f"{where} as {parts['user']}" if parts.get("user") else where


_DSN_PARSE = (
    "connection info string",
    "invalid dsn",
    "invalid connection option",
    "invalid integer value",
    "invalid uri",
    "unterminated quoted string",
    "invalid value for parameter",
    "invalid sslmode",
    "invalid port",
    "servname not supported",  # a port that is not a number, seen by the resolver first
)
_DB_AUTH = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "fe_sendauth",
    "pg_hba.conf",
)
_ROLE_MISSING = re.compile(r'role "([^"]+)" does not exist')
_DB_MISSING = re.compile(r'database "([^"]+)" does not exist')
_DB_CHECK = "postgres.dsn (MDPIPE_POSTGRES__DSN) and that PostgreSQL runs (`mdpipe infra status`)"


def database_failure(exc: BaseException, dsn: str) -> Failure:
    """The one-line :class:`Failure` for a psycopg error met while connecting to / migrating ``dsn``."""
    text = " ".join(str(exc).split())
    low = text.lower()
    where = describe_dsn(dsn)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__  # libpq adds hints below
    reason = re.sub(r"^connection (failed|is bad): ", "", first)
    reason = re.sub(r'^connection to server (at|on) "[^"]*"(?:\s*\([^)]*\))?, port \d+ failed: ', "", reason)
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    if any(p in low for p in _DSN_PARSE):
        return Misconfigured(
            "postgres.dsn does not parse", reason, "postgres.dsn: postgresql://user:password@host:port/db"
        )
    if (m := _DB_MISSING.search(text)) is not None:
        return Misconfigured(
            f"database {where}: no database {m.group(1)!r}", "", "the database name in postgres.dsn (create it first)"
        )
    if _ROLE_MISSING.search(text) or any(p in low for p in _DB_AUTH):
        return Refused(f"database {where} refused the login", reason, "the user and password in postgres.dsn")
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate == "42501" or "permission denied" in low or "must be owner" in low:
        return Refused(f"database {where}: the role lacks a privilege", reason, "the role's grants (sink migrate)")
    return Unavailable(f"database {where} unreachable", reason, _DB_CHECK)


def dsn_empty() -> Misconfigured:
    return Misconfigured(
        "postgres.dsn is empty", "", "postgres.dsn (run `mdpipe infra up` or set MDPIPE_POSTGRES__DSN)"
    )


def database_error_is_fatal(exc: BaseException, dsn: str = "") -> bool:
    """True when waiting cannot fix ``exc`` (refused login, missing database, unparsable DSN): stop retrying."""
    return not isinstance(database_failure(exc, dsn), Unavailable)


# ------------------------------------------------------------------------------------------------ kafka
_KAFKA_UNAVAILABLE = {
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_TIMED_OUT",
    "_RESOLVE",
    "_MSG_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "NETWORK_EXCEPTION",
    "REQUEST_TIMED_OUT",
    "LEADER_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
}
_KAFKA_REFUSED = {
    "_AUTHENTICATION",
    "SASL_AUTHENTICATION_FAILED",
    "_SSL",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
}
_KAFKA_MISSING = {"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION"}
_BROKER_CHECK = "kafka.bootstrap_servers and that the broker runs (`mdpipe infra status`)"


def broker_failure(code: str, reason: str, servers: str) -> Failure | None:
    """The :class:`Failure` for a librdkafka error code name (``_TRANSPORT``...) and its text; None if unknown."""
    low = reason.lower()
    if code in _KAFKA_REFUSED or "authentication" in low or "ssl handshake" in low:
        return Refused(
            f"kafka broker {servers} refused the client",
            reason,
            "kafka.security_protocol, kafka.sasl_* and kafka.ssl_cafile, and the client's ACLs",
        )
    if code in _KAFKA_MISSING:
        return Misconfigured("kafka topic missing", reason, "the topic names (create them with `mdpipe topics create`)")
    if code in _KAFKA_UNAVAILABLE:
        return Unavailable(f"kafka broker {servers} unreachable", reason, _BROKER_CHECK)
    if code == "_INVALID_ARG":
        return Misconfigured("kafka client settings rejected", reason, "the [kafka] settings")
    return None


def broker_unanswered(servers: str, timeout_s: float, reason: str) -> Unavailable:
    """The broker gave no answer within the start-up probe's bound (:func:`mdpipe.preflight.require_broker`)."""
    return Unavailable(
        f"kafka broker {servers} unreachable",
        f"no answer within {timeout_s:g} s ({reason})",
        f"{_BROKER_CHECK}; kafka.probe_timeout_s sets the bound",
    )


def sink_fenced(group: str, instance_id: str) -> Failure:
    """Another sink joined the group with this sink's ``group.instance.id`` and fenced it (static membership);
    exit 1: this sink may run again once the other one is gone."""
    return Failure(
        f"another sink joined group {group} as {instance_id!r}",
        "",
        "give each running sink its own sink.instance_id (--instance-id)",
    )


# ------------------------------------------------------------------------------------------------ venue
def venue_refused(gatherer: str, why: str, url: str) -> Refused:
    """A gatherer gave up because the venue kept refusing its credentials (:mod:`ingest.auth_refusals`)."""
    return Refused(
        f"gatherer {gatherer} gave up",
        f"{why} at {url}",
        "venue.key_id and venue.private_key_path (or --key-id/--private-key): a key of this environment "
        "(production or demo) that is not revoked; the machine's clock (signatures carry a timestamp)",
    )


def _kafka_exception(exc: BaseException, servers: str) -> Failure | None:
    try:
        from confluent_kafka import KafkaError, KafkaException
    except ImportError:  # pragma: no cover - confluent-kafka is a dependency
        return None
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if not isinstance(err, KafkaError):
        return None
    return broker_failure(err.name(), err.str(), servers)


# ---------------------------------------------------------------------------------------------- boundary
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def explain(exc: BaseException, config: Any = None) -> Failure | None:
    """The one-line :class:`Failure` behind ``exc`` (itself or an exception it was raised from), or None when
    ``exc`` is not an expected runtime failure (then it is a bug and keeps its traceback). ``config`` (a
    :class:`mdpipe.config.Config`) names the addresses involved."""
    dsn = getattr(getattr(config, "postgres", None), "dsn", "") or ""
    servers = getattr(getattr(config, "kafka", None), "bootstrap_servers", "") or "(kafka.bootstrap_servers)"
    for current in _chain(exc):
        if isinstance(current, Failure):
            return current
        failure = _library_failure(current, dsn, servers)
        if failure is not None:
            return failure
    return None


def _library_failure(exc: BaseException, dsn: str, servers: str) -> Failure | None:
    module = type(exc).__module__ or ""
    if module.startswith("psycopg"):
        import psycopg

        if not isinstance(exc, psycopg.Error):
            return None
        failure = database_failure(exc, dsn)
        # a connection error of any kind; other errors only when classified (a failing SQL statement is a bug)
        return failure if isinstance(exc, psycopg.OperationalError) or not isinstance(failure, Unavailable) else None
    if module.startswith(("cimpl", "confluent_kafka")):
        return _kafka_exception(exc, servers)
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return Unavailable("cannot listen: address already in use", str(exc), "the port settings (--port)")
        if exc.filename is not None and exc.errno in _PATH_ERRORS:
            return Misconfigured(f"{exc.filename}: {exc.strerror}", "", "the path and its permissions")
    return None


_PATH_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EISDIR)


def guarded(main: Callable[[], int], name: str = "mdpipe") -> int:
    """Run an entry point (``bench.*``), turning an expected failure into one line on stderr and its exit status."""
    import sys

    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from mdpipe.config import ConfigError

        if isinstance(exc, ConfigError):
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        failure = explain(exc)
        if failure is None:
            raise
        print(f"{name}: {failure}", file=sys.stderr)
        return failure.exit_status
