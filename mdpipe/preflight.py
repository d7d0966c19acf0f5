"""Start-up probes: is the broker / the database there and does it accept us? Bounded, and one line when not.

Commands that need the broker call :func:`require_broker` before anything else talks to it: one metadata
request that must be answered within ``kafka.probe_timeout_s`` (default 5 s), else the command stops with one
line naming the servers and librdkafka's own reason (connection refused, a name that does not resolve, a SASL or
TLS refusal) -- instead of librdkafka's 30 s of retries, its raw log lines and a traceback.

:func:`require_database` does the same for PostgreSQL (``connect_timeout`` = ``DATABASE_PROBE_S``, 5 s): a DSN
that does not parse, a refused login, a missing database, an unreachable server each get their one line
(:mod:`mdpipe.failures`). :func:`wait_for_database` is the long-running sink's variant: while the database is
merely unreachable it waits with backoff (it may be starting), but a refused login, a missing database or an
unparsable DSN stop it at once, since waiting cannot fix them.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from mdpipe.config import KafkaConfig
from mdpipe.failures import Failure, Unavailable, broker_failure, broker_unanswered, database_failure, dsn_empty

__all__ = ["DATABASE_PROBE_S", "require_broker", "require_database", "wait_for_database"]

DATABASE_PROBE_S = 5.0
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
_BROKER_PREFIX = re.compile(r"^\S+/(bootstrap|\d+): ")
_TIMING = re.compile(r"\s*\(after \d+ms in state \w+\)")


class _Capture(logging.Handler):
    """Keeps the probe client's log lines: the last warning names why the broker did not answer."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[2]) if len(args) == 3 else record.getMessage()
        text = _TIMING.sub("", _BROKER_PREFIX.sub("", _THREAD.sub("", text))).strip()
        self.lines.append((record.levelno, text))

    def reason(self) -> str:
        warnings = [text for level, text in self.lines if level >= logging.WARNING]
        auth = [text for text in warnings if "authentic" in text.lower() or "ssl" in text.lower()]
        return (auth or warnings or [""])[-1]


def require_broker(kafka: KafkaConfig, timeout_s: float | None = None) -> Any:
    """Ask the broker for cluster metadata within ``timeout_s`` (default ``kafka.probe_timeout_s``); return it.

    Raises :class:`~mdpipe.failures.Unavailable` (no answer) or :class:`~mdpipe.failures.Refused` (SASL/TLS
    refused) with one line naming ``kafka.bootstrap_servers``, the bound and librdkafka's reason. The probe's own
    client log lines are folded into that line instead of being logged."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from mdpipe.kafka import kafka_client_config

    timeout = kafka.probe_timeout_s if timeout_s is None else timeout_s
    capture = _Capture()
    probe_log = logging.Logger("mdpipe.preflight.kafka")  # not in the logger tree: nothing propagates
    probe_log.addHandler(capture)
    admin = AdminClient({**kafka_client_config(kafka), "logger": probe_log})
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # hands over the log lines queued while it tried
        err = exc.args[0] if exc.args else None
        code = err.name() if err is not None else ""
        reason = capture.reason() or (err.str() if err is not None else str(exc))
        failure = broker_failure(code, reason, kafka.bootstrap_servers)
        if failure is None or isinstance(failure, Unavailable):
            failure = broker_unanswered(kafka.bootstrap_servers, timeout, reason)
        raise failure from None


def require_database(dsn: str, timeout_s: float = DATABASE_PROBE_S) -> None:
    """Connect to ``dsn`` once (``connect_timeout`` ~ ``timeout_s``) and disconnect; raise the one-line
    :class:`~mdpipe.failures.Failure` when that fails."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if not dsn:
        raise dsn_empty()
    try:
        conninfo_to_dict(dsn)  # parse errors name the DSN, not a server
        with psycopg.connect(dsn, connect_timeout=max(2, math.ceil(timeout_s))):
            pass
    except psycopg.Error as exc:
        raise database_failure(exc, dsn) from None


def wait_for_database(
    dsn: str,
    *,
    initial_s: float,
    max_s: float,
    warn: Callable[[Failure, float], None],
    attempt: Callable[[], Any] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> Any:
    """Run ``attempt`` (default: :func:`require_database`) until it succeeds, waiting with exponential backoff
    (``initial_s`` doubling to ``max_s``, calling ``warn(failure, delay)``) while the database is unreachable.
    A refused login, a missing database or an unparsable DSN raise at once. ``sleep`` returning True stops the
    wait (returns None)."""
    import psycopg

    attempt = attempt or (lambda: require_database(dsn))
    delay = initial_s
    while True:
        try:
            return attempt()
        except psycopg.OperationalError as exc:  # other errors (a failing statement) are not waited out
            failure: Failure = database_failure(exc, dsn)
        except Failure as exc:
            failure = exc
        if not isinstance(failure, Unavailable):
            raise failure from None
        warn(failure, delay)
        if sleep(delay) is True:
            return None
        delay = min(delay * 2, max_s)
