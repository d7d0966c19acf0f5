"""Expected failures become one line (mdpipe.failures): classification of the real libraries' errors, redaction,
the CLI boundary, and the rate-limited librdkafka log filter (mdpipe.logging)."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from mdpipe.failures import (
    Failure,
    Misconfigured,
    Refused,
    Unavailable,
    database_error_is_fatal,
    database_failure,
    describe_dsn,
    explain,
    redact,
)
from mdpipe.logging import KafkaClientLogFilter, configure_logging, failure_line


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port bound by nobody listening: connections to it are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def _connect_error(dsn: str) -> psycopg.Error:
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.Error as exc:
        return exc
    raise AssertionError(f"connecting to {dsn} worked")


def test_refused_connection_is_unavailable_and_names_the_database(closed_port: int) -> None:
    exc = _connect_error(f"postgresql://alice:s3cret@127.0.0.1:{closed_port}/prices")
    failure = database_failure(exc, f"postgresql://alice:s3cret@127.0.0.1:{closed_port}/prices")
    assert isinstance(failure, Unavailable) and failure.exit_status == 1
    text = str(failure)
    assert f"127.0.0.1:{closed_port}/prices as alice unreachable: Connection refused" in text
    assert "postgres.dsn" in text and "\n" not in text and "s3cret" not in text
    assert not database_error_is_fatal(exc)


@pytest.mark.parametrize("dsn", ["notadsn password=s3cret", "host=127.0.0.1 port=x", "postgresql://u:s3cret@h:1:2/d"])
def test_unparsable_dsn_is_misconfigured_and_never_echoes_the_password(dsn: str) -> None:
    failure = database_failure(_connect_error(dsn), dsn)
    assert isinstance(failure, Misconfigured) and failure.exit_status == 2
    assert str(failure).startswith("postgres.dsn does not parse")
    assert "s3cret" not in str(failure)
    assert database_error_is_fatal(_connect_error(dsn))


def test_refused_login_and_missing_database_are_fatal_with_their_own_words() -> None:
    # libpq's texts as the server sends them (sqlstate is not set on connection errors)
    login = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication '
        'failed for user "loader"'
    )
    failure = database_failure(login, "postgresql://loader:pw@10.0.0.5/md")
    assert isinstance(failure, Refused)
    assert str(failure) == (
        'database 10.0.0.5:5432/md as loader refused the login: password authentication failed for user "loader"; '
        "check the user and password in postgres.dsn"
    )
    missing = psycopg.OperationalError('connection failed: FATAL:  database "md" does not exist')
    assert isinstance(database_failure(missing, "postgresql://h/md"), Misconfigured)
    assert database_error_is_fatal(login) and database_error_is_fatal(missing)
    starting = psycopg.OperationalError("connection failed: FATAL:  the database system is starting up")
    assert not database_error_is_fatal(starting)


def test_redact_masks_url_and_keyword_passwords() -> None:
    assert redact("postgresql://u:p@ss@h/d") == "postgresql://u:***@h/d"
    assert redact("host=h password=abc user=u") == "host=h password=*** user=u"
    assert describe_dsn("postgresql://u:pw@db.example:6543/md") == "db.example:6543/md as u"
    assert describe_dsn("nonsense") == "postgres.dsn"


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (KafkaError._TRANSPORT, Unavailable, "kafka broker b:9 unreachable"),
        (KafkaError._ALL_BROKERS_DOWN, Unavailable, "kafka broker b:9 unreachable"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, Refused, "refused the client"),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, Misconfigured, "mdpipe topics create"),
    ],
)
def test_kafka_errors_map_by_code(code: int, kind: type[Failure], words: str) -> None:
    failure = explain(KafkaException(KafkaError(code, "what librdkafka said")), _config(servers="b:9"))
    assert isinstance(failure, kind)
    assert words in str(failure) and "what librdkafka said" in str(failure)


def test_explain_follows_the_chain_and_leaves_bugs_alone() -> None:
    root = psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "u"')
    try:
        try:
            raise root
        except psycopg.Error as exc:
            raise RuntimeError("sink writer failed") from exc
    except RuntimeError as wrapped:
        assert isinstance(explain(wrapped, _config()), Refused)
    assert explain(KeyError("bug")) is None
    assert explain(psycopg.errors.SyntaxError("syntax error at or near")) is None  # a bad statement is a bug


def test_failure_line_is_json_with_json_format() -> None:
    line = failure_line("kafka broker x unreachable", "json", command="topics", exit_status=1)
    record = json.loads(line)
    assert record["event"] == "command_failed" and record["command"] == "topics" and record["level"] == "error"
    text = failure_line("kafka broker x unreachable", "kv", command="topics")
    assert text == "mdpipe: kafka broker x unreachable"  # as configuration errors have always been


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _librdkafka_record(text: str, fac: str = "FAIL", client: str = "rdkafka#consumer-1") -> logging.LogRecord:
    # the exact call confluent-kafka makes: logger.log(level, "%s [%s] %s", fac, name, message)
    return logging.LogRecord("mdpipe.kafka.client", logging.ERROR, "", 0, "%s [%s] %s", (fac, client, text), None)


def test_kafka_client_filter_structures_and_rate_limits_repeats() -> None:
    clock = _Clock()
    filt = KafkaClientLogFilter(interval_s=10.0, clock=clock)
    refused = (
        "[thrd:b:9/bootstrap]: b:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused "
        "(after {}ms in state CONNECT)"
    )
    first = _librdkafka_record(refused.format(0))
    assert filt.filter(first)
    assert first.getMessage() == "kafka_client"
    assert first.kv == {  # type: ignore[attr-defined]
        "client": "rdkafka#consumer-1",
        "fac": "FAIL",
        "message": "b:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)",
    }
    passed = []
    for i in range(1, 300):  # librdkafka retrying every 100 ms for 30 s
        clock.now = i * 0.1
        record = _librdkafka_record(refused.format(i % 7))
        if filt.filter(record):
            passed.append(record)
    assert len(passed) == 2  # at 10 s and 20 s
    assert [r.kv["repeated"] for r in passed] == [99, 99]  # type: ignore[attr-defined]
    # librdkafka folds its own suppression count into the timing parenthesis: still the same kind of message
    clock.now = 29.95
    assert not filt.filter(_librdkafka_record(refused.format(0)[:-1] + ", 1 identical error(s) suppressed)"))
    other = _librdkafka_record("Broker: Not coordinator", fac="COMMITFAIL")
    assert filt.filter(other)  # another kind of message is not held back by the first


def test_kafka_client_records_reach_the_configured_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        buf = io.StringIO()
        monkeypatch.setattr("sys.stderr", buf)
        from mdpipe.logging import kafka_client_logger

        kafka_client_logger().log(logging.WARNING, "%s [%s] %s", "REQTMOUT", "rdkafka#producer-7", "timed out")
        record = json.loads(buf.getvalue())
        assert record["event"] == "kafka_client" and record["fac"] == "REQTMOUT" and record["message"] == "timed out"
    finally:
        root.handlers[:], root.level = saved


def _config(servers: str = "b:9", dsn: str = "postgresql://u@h/d") -> object:
    import msgspec

    from mdpipe.config import load_config

    base = load_config(environ={}, use_infra_state=False)
    return msgspec.structs.replace(
        base,
        kafka=msgspec.structs.replace(base.kafka, bootstrap_servers=servers),
        postgres=msgspec.structs.replace(base.postgres, dsn=dsn),
    )


def test_client_errors_are_rate_limited_per_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages' own reports of client errors (error_cb): the first passes, repeats at most once per 10 s."""
    import mdpipe.logging as mdlog

    clock = _Clock()
    monkeypatch.setattr(mdlog, "_client_errors", mdlog.RepeatLimiter(10.0, clock=clock))
    said: list[tuple[str, dict[str, object]]] = []

    class _Log:
        def warning(self, event: str, **fields: object) -> None:
            said.append((event, fields))

    refused = "b:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after {}ms in state CONNECT)"
    for i in range(250):  # every 100 ms for 25 s
        clock.now = i * 0.1
        mdlog.log_client_error(_Log(), "producer_error", KafkaError(KafkaError._TRANSPORT, refused.format(i % 5)))
    assert [f.get("repeated", 0) for _, f in said] == [0, 99, 99]
    assert all(event == "producer_error" and "Connection refused" in str(f["error"]) for event, f in said)
    mdlog.log_client_error(_Log(), "producer_error", KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert len(said) == 4  # another kind passes at once
