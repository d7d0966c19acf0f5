"""The real `mdpipe` CLI meeting expected runtime failures: one line naming what failed and what to check, a
non-zero exit status, promptly, and no traceback (issue 14, "Failures are one line").

Each test runs the command as a subprocess with a private run dir (no `mdpipe infra up` addresses leak in) and the
failure set up for real: a closed port for the broker and the database, a role with a password on a private
PostgreSQL, an unparsable DSN, a missing topic, the venue emulator refusing a wrong key (HTTP 401).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Result:
    def __init__(self, status: int | None, elapsed: float, stdout: str, stderr: str) -> None:
        self.status, self.elapsed, self.stdout, self.stderr = status, elapsed, stdout, stderr
        self.lines = [line for line in stderr.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"status={self.status} elapsed={self.elapsed:.1f}s stderr={self.stderr[-3000:]!r}"


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    env["MDPIPE_RUN_DIR"] = str(tmp_path / "run")  # no infra.json: only the addresses the test gives
    env["PYTHONPATH"] = str(REPO)
    env.update({f"MDPIPE_{k.upper()}": v for k, v in settings.items()})
    return env


def mdpipe(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> Result:
    """Run ``mdpipe argv``; a command still running after ``timeout`` is killed (status None)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdpipe", *argv],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        status: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status = None
    return Result(status, time.monotonic() - started, out, err)


def assert_one_line_failure(result: Result, status: int, within_s: float, *words: str, max_lines: int = 1) -> None:
    assert result.status == status, result
    assert result.elapsed < within_s, result
    assert "Traceback" not in result.stderr + result.stdout, result
    assert 1 <= len(result.lines) <= max_lines, result
    last = result.lines[-1]
    for word in words:
        assert word in last, result
    assert "; check " in last, result  # what to check


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound by nobody listening: connecting is refused at once, and no one else can take it meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# ------------------------------------------------------------------------------------------- broker unreachable
@pytest.mark.parametrize(
    "argv",
    [
        ["topics", "describe"],
        ["topics", "create"],
        ["dedup"],
        ["sink"],
        ["replay", "events", "--from-ts", "1", "--to-ts", "2"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_unreachable_broker_is_one_line_within_the_probe_bound(
    argv: list[str], closed_port: int, tmp_path: Path
) -> None:
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=f"127.0.0.1:{closed_port}",
        kafka__probe_timeout_s="2",
        postgres__dsn=f"postgresql://u@127.0.0.1:{closed_port}/x",
    )
    result = mdpipe(argv, env, tmp_path, timeout=45)
    assert_one_line_failure(result, 1, 2 + 10, f"kafka broker 127.0.0.1:{closed_port} unreachable", "within 2 s")
    assert "Connection refused" in result.lines[-1]


def test_topics_describe_against_a_closed_port_with_the_default_bound(closed_port: int, tmp_path: Path) -> None:
    """Done when: `mdpipe topics describe` against a closed port exits non-zero promptly (default bound 5 s)."""
    env = _env(tmp_path, kafka__bootstrap_servers=f"127.0.0.1:{closed_port}")
    result = mdpipe(["topics", "describe"], env, tmp_path)
    assert_one_line_failure(result, 1, 5 + 10, "kafka broker", "unreachable", "no answer within 5 s")


def test_status_with_the_broker_down_is_prompt_and_quiet(closed_port: int, tmp_path: Path) -> None:
    env = _env(tmp_path, kafka__bootstrap_servers=f"127.0.0.1:{closed_port}", kafka__probe_timeout_s="2")
    result = mdpipe(["status", "--interval", "0.1"], env, tmp_path)
    assert result.status == 0 and result.elapsed < 12, result
    assert "broker not reachable: kafka broker" in result.stdout, result
    assert result.stderr.strip() == "", result  # no librdkafka lines on stderr


# ----------------------------------------------------------------------------------------- database failures
def test_sink_migrate_against_a_closed_port(closed_port: int, tmp_path: Path) -> None:
    """Done when: `mdpipe sink migrate` against a closed port exits non-zero promptly, no traceback."""
    env = _env(tmp_path, postgres__dsn=f"postgresql://mdpipe:s3cret@127.0.0.1:{closed_port}/md")
    result = mdpipe(["sink", "migrate"], env, tmp_path)
    where = f"database 127.0.0.1:{closed_port}/md as mdpipe unreachable"
    assert_one_line_failure(result, 1, 10, where, "Connection refused")
    assert "s3cret" not in result.stderr


def _empty_truth(tmp_path: Path) -> str:
    """An (empty) truth file and venue record, so that `verify` gets as far as the database."""
    from venue_sim.record import record_path

    truth = tmp_path / "truth.msgpack"
    truth.write_bytes(b"")
    record_path(truth).write_bytes(b"")
    return str(truth)


def test_verify_against_a_closed_port_names_the_database(closed_port: int, tmp_path: Path) -> None:
    env = _env(tmp_path, postgres__dsn=f"postgresql://u@127.0.0.1:{closed_port}/md")
    result = mdpipe(["verify", "--truth", _empty_truth(tmp_path)], env, tmp_path)
    assert_one_line_failure(result, 1, 10, f"database 127.0.0.1:{closed_port}/md as u unreachable")


@pytest.mark.parametrize("argv", [["sink", "migrate"], ["sink"], ["verify"]], ids=" ".join)
def test_unparsable_dsn_is_one_line(argv: list[str], kafka_bootstrap: str, tmp_path: Path) -> None:
    dsn = "host=127.0.0.1 port=54x32 password=s3cret"
    env = _env(tmp_path, postgres__dsn=dsn, kafka__bootstrap_servers=kafka_bootstrap)
    if argv == ["verify"]:
        argv = [*argv, "--truth", _empty_truth(tmp_path)]
    result = mdpipe(argv, env, tmp_path)
    assert_one_line_failure(result, 2, 15, "postgres.dsn does not parse", 'invalid integer value "54x32"')
    assert "s3cret" not in result.stderr


@pytest.fixture(scope="module")
def password_database() -> Iterator[dict[str, str]]:
    """A private PostgreSQL whose role ``loader`` must give its password (scram-sha-256) -- the shared test server
    trusts every local connection, so a wrong password could not be refused there. DSNs with the right and a wrong
    password."""
    from infra.postgres_native import PostgresServer, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("needs the PostgreSQL server binaries (mdpipe infra install)")
    base = Path(tempfile.mkdtemp(prefix=f"mdpipe-private-{os.getpid()}-"))
    base.chmod(0o755)  # the postgres user must traverse it
    server = PostgresServer(base, die_with_parent=True).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE loader LOGIN PASSWORD 'right-password'")
            conn.execute("GRANT ALL ON DATABASE mdpipe TO loader")
            conn.execute("ALTER DATABASE mdpipe OWNER TO loader")
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            hba.write_text("host all loader 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        host_port = server.dsn.split("@", 1)[1].split("/", 1)[0]
        dsns = {
            "admin": server.dsn,
            "right": f"postgresql://loader:right-password@{host_port}/mdpipe",
            "wrong": f"postgresql://loader:wrong-password@{host_port}/mdpipe",
        }
        deadline = time.monotonic() + 10
        while True:  # the reload is asynchronous: wait until the wrong password is refused
            try:
                psycopg.connect(dsns["wrong"], connect_timeout=2).close()
            except psycopg.OperationalError:
                break
            assert time.monotonic() < deadline, "pg_hba.conf reload did not take effect"
            time.sleep(0.2)
        psycopg.connect(dsns["right"], connect_timeout=2).close()
        yield dsns
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("argv", [["sink", "migrate"], ["sink"], ["sink", "--no-migrate"]], ids=" ".join)
def test_wrong_password_fails_fast_instead_of_retrying_forever(
    argv: list[str], password_database: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, postgres__dsn=password_database["wrong"], kafka__bootstrap_servers=kafka_bootstrap)
    result = mdpipe(argv, env, tmp_path, timeout=40)
    assert_one_line_failure(
        result, 2, 15, "as loader refused the login", "password authentication failed", "user and password"
    )
    assert "wrong-password" not in result.stderr


def test_running_sink_stops_when_the_database_starts_refusing_its_password(
    password_database: dict[str, str], mdpipe_config: Any, tmp_path: Path
) -> None:
    """A sink already loading whose password stops working (rotated, revoked) exits with one line at its next
    write instead of reconnecting for ever."""
    from confluent_kafka import Producer

    from bench.sink.data import make_events
    from mdpipe.kafka import producer_config
    from mdpipe.topics import ensure_topics, topic_names
    from schemas import encode_event

    ensure_topics(mdpipe_config)
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=mdpipe_config.kafka.bootstrap_servers,
        kafka__topic_prefix=mdpipe_config.kafka.topic_prefix,
        postgres__dsn=password_database["right"],
        sink__backoff_max_s="1",
    )
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        sink = subprocess.Popen(
            [sys.executable, "-m", "mdpipe", "sink", "--metrics-port", "0"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "sink_started" not in stderr_path.read_text():
            assert sink.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.2)
        with psycopg.connect(password_database["admin"], autocommit=True) as conn:
            conn.execute("ALTER ROLE loader PASSWORD 'rotated-password'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'loader'")
        producer = Producer(producer_config(mdpipe_config.kafka))
        for ev in make_events(20, markets=4, seed=14):
            producer.produce(topic_names(mdpipe_config).events, key=ev.market.encode(), value=encode_event(ev))
        assert producer.flush(30) == 0
        try:
            status: int | None = sink.wait(30)
        except subprocess.TimeoutExpired:
            status = None
    finally:
        if sink.poll() is None:
            os.killpg(sink.pid, signal.SIGKILL)
            sink.wait()
        with psycopg.connect(password_database["admin"], autocommit=True) as conn:
            conn.execute("ALTER ROLE loader PASSWORD 'right-password'")
    stderr_text = stderr_path.read_text()
    assert status == 2, stderr_text[-3000:]
    assert "Traceback" not in stderr_text, stderr_text[-3000:]
    last = stderr_text.strip().splitlines()[-1]
    assert last.startswith("mdpipe: database ") and "as loader refused the login" in last, stderr_text[-3000:]
    assert "user and password in postgres.dsn" in last and "right-password" not in stderr_text


def test_verify_with_a_wrong_password_is_one_line(password_database: dict[str, str], tmp_path: Path) -> None:
    env = _env(tmp_path, postgres__dsn=password_database["wrong"])
    result = mdpipe(["verify", "--truth", _empty_truth(tmp_path)], env, tmp_path)
    assert_one_line_failure(result, 2, 15, "as loader refused the login", "user and password")
    assert "wrong-password" not in result.stderr


def run_for(argv: list[str], env: dict[str, str], cwd: Path, seconds: float) -> Result:
    """Run ``mdpipe argv`` for ``seconds``; if it is still running then, stop it (status None)."""
    return mdpipe(argv, env, cwd, timeout=seconds)


def test_sink_waits_for_an_unreachable_database(closed_port: int, mdpipe_config: Any, tmp_path: Path) -> None:
    """Fail fast only on what waiting cannot fix: a database that is merely down (it may be starting) is waited
    for with back-off, as before."""
    from mdpipe.topics import ensure_topics

    ensure_topics(mdpipe_config)
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=mdpipe_config.kafka.bootstrap_servers,
        kafka__topic_prefix=mdpipe_config.kafka.topic_prefix,
        postgres__dsn=f"postgresql://u@127.0.0.1:{closed_port}/md",
        sink__backoff_initial_s="0.5",
        sink__backoff_max_s="1",
    )
    result = run_for(["sink", "--metrics-port", "0"], env, tmp_path, 8)
    assert result.status is None, result  # still waiting when stopped
    assert "Traceback" not in result.stderr, result
    waits = [line for line in result.lines if "database_unavailable" in line]
    assert len(waits) >= 2 and f"127.0.0.1:{closed_port}/md as u unreachable" in waits[-1], result


def test_right_password_migrates(password_database: dict[str, str], tmp_path: Path) -> None:
    """The control for the test above: the same role with its password is let in."""
    env = _env(tmp_path, postgres__dsn=password_database["right"])
    result = mdpipe(["sink", "migrate"], env, tmp_path)
    assert result.status == 0 and "schema mode=" in result.stdout, result


# -------------------------------------------------------------------------------------------- missing topics
@pytest.mark.parametrize(
    "argv", [["gather", "--id", "g1"], ["dedup"], ["sink"], ["topics", "describe", "nope.events"]], ids=" ".join
)
def test_missing_topic_is_one_line(argv: list[str], kafka_bootstrap: str, pg_dsn: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."  # no topic has it
    env = _env(tmp_path, kafka__bootstrap_servers=kafka_bootstrap, kafka__topic_prefix=prefix, postgres__dsn=pg_dsn)
    result = mdpipe(argv, env, tmp_path)
    assert result.status not in (None, 0), result
    assert result.elapsed < 30 and "Traceback" not in result.stderr, result
    said = result.lines + result.stdout.strip().splitlines()
    assert any("mdpipe topics create" in line for line in said[-1:]), result
    assert len(said) <= 3, result


# ---------------------------------------------------------------------------------------------- venue refusal
@pytest.fixture
def venue_with_auth(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The emulator (a subprocess) accepting only one key; plus another key it does not know."""
    from venue_sim.keys import generate_test_keypair

    good = generate_test_keypair(tmp_path / "good")
    bad = generate_test_keypair(tmp_path / "bad")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    argv = ["sim", "--markets", "5", "--rate", "20", "--port", str(port), "--public-key", good.public_key_path]
    argv += ["--key-id", good.key_id, "--truth", str(tmp_path / "truth")]
    sim = subprocess.Popen(
        [sys.executable, "-m", "mdpipe", *argv],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert sim.poll() is None and time.monotonic() < deadline, "emulator did not start"
                time.sleep(0.2)
        yield {
            "rest_url": f"http://127.0.0.1:{port}/trade-api/v2",
            "ws_url": f"ws://127.0.0.1:{port}/trade-api/ws/v2",
            "bad": bad,
        }
    finally:
        sim.terminate()
        sim.wait(10)


@pytest.mark.parametrize("client", ["picows", "websockets"])
def test_gatherer_refused_by_the_venue_gives_up_with_one_line(
    client: str, venue_with_auth: dict[str, Any], mdpipe_config: Any, tmp_path: Path
) -> None:
    from mdpipe.topics import ensure_topics

    ensure_topics(mdpipe_config)
    bad = venue_with_auth["bad"]
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=mdpipe_config.kafka.bootstrap_servers,
        kafka__topic_prefix=mdpipe_config.kafka.topic_prefix,
        venue__rest_url=venue_with_auth["rest_url"],
        venue__ws_url=venue_with_auth["ws_url"],
        venue__key_id=bad.key_id,
        venue__private_key_path=bad.private_key_path,
        gather__ws_client=client,
    )
    result = mdpipe(["gather", "--id", "g1", "--metrics-port", "0"], env, tmp_path, timeout=60)
    # the 5 s start grace, then the producer's flush of what discovery published (markets topic)
    assert_one_line_failure(
        result, 2, 30, "gatherer g1 gave up", "HTTP 401 authentication_error", "venue.key_id", max_lines=40
    )
    assert result.lines[-1].startswith("mdpipe: gatherer g1 gave up")


@pytest.fixture
def refusing_rest() -> Iterator[str]:
    """A venue REST endpoint that answers every request HTTP 403 with a JSON error body."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error":{"code":"forbidden","message":"key lacks access"}}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/trade-api/v2"
    finally:
        server.shutdown()
        server.server_close()


def test_gatherer_refused_over_rest_gives_up_with_one_line(
    refusing_rest: str, closed_port: int, mdpipe_config: Any, tmp_path: Path
) -> None:
    """REST refusals alone (the WebSocket side merely unreachable, which never counts) make the gatherer give up."""
    from mdpipe.topics import ensure_topics
    from venue_sim.keys import generate_test_keypair

    ensure_topics(mdpipe_config)
    key = generate_test_keypair(tmp_path / "key")
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=mdpipe_config.kafka.bootstrap_servers,
        kafka__topic_prefix=mdpipe_config.kafka.topic_prefix,
        venue__rest_url=refusing_rest,
        venue__ws_url=f"ws://127.0.0.1:{closed_port}/trade-api/ws/v2",
        venue__key_id=key.key_id,
        venue__private_key_path=key.private_key_path,
    )
    result = mdpipe(["gather", "--id", "g1", "--metrics-port", "0"], env, tmp_path, timeout=60)
    assert_one_line_failure(
        result, 2, 30, "gatherer g1 gave up", "rest requests in a row", "HTTP 403 forbidden: key lacks access",
        "venue.key_id", max_lines=60,
    )  # fmt: skip


def test_gatherer_rides_out_an_unreachable_venue(closed_port: int, mdpipe_config: Any, tmp_path: Path) -> None:
    """Only the venue's refusal of the credentials ends a gatherer: a venue it cannot reach (network, restart) is
    retried with back-off however long it lasts."""
    from mdpipe.topics import ensure_topics

    ensure_topics(mdpipe_config)
    env = _env(
        tmp_path,
        kafka__bootstrap_servers=mdpipe_config.kafka.bootstrap_servers,
        kafka__topic_prefix=mdpipe_config.kafka.topic_prefix,
        venue__rest_url=f"http://127.0.0.1:{closed_port}/trade-api/v2",
        venue__ws_url=f"ws://127.0.0.1:{closed_port}/trade-api/ws/v2",
        gather__backoff_max_s="1",
    )
    argv = ["gather", "--id", "g1", "--metrics-port", "0", "--no-auth"]
    result = run_for(argv, env, tmp_path, 12)  # longer than the 5 s start grace of refused credentials
    assert result.status is None, result  # still retrying when stopped
    assert "Traceback" not in result.stderr and "gave up" not in result.stderr, result


# -------------------------------------------------------------------------------------------------- JSON logs
def test_json_log_format_stays_json_when_the_broker_is_unreachable(closed_port: int, tmp_path: Path) -> None:
    env = _env(tmp_path, kafka__bootstrap_servers=f"127.0.0.1:{closed_port}", kafka__probe_timeout_s="2")
    for argv in (["topics", "describe"], ["dedup"]):
        result = mdpipe(["--log-format", "json", *argv], env, tmp_path)
        assert result.status == 1 and result.lines, result
        records = [json.loads(line) for line in result.lines]  # every line parses
        assert records[-1]["event"] == "command_failed" and "unreachable" in records[-1]["error"]


@pytest.mark.parametrize(
    ("argv", "ready"),
    [(["sink"], "sink_started"), (["dedup", "--workdir", "dedup-state"], "partitions_assigned")],
    ids=["sink", "dedup"],
)
def test_json_log_format_stays_json_through_a_broker_outage(
    argv: list[str], ready: str, private_kafka: Any, make_database: Any, tmp_path: Path
) -> None:
    """A stage running when its broker dies: librdkafka's complaints arrive as rate-limited JSON records."""
    import msgspec

    from mdpipe.config import load_config
    from mdpipe.topics import ensure_topics

    broker = private_kafka()
    base = load_config(environ={}, use_infra_state=False)
    config = msgspec.structs.replace(
        base, kafka=msgspec.structs.replace(base.kafka, bootstrap_servers=broker.bootstrap_servers, partitions=2)
    )
    ensure_topics(config)
    env = _env(tmp_path, kafka__bootstrap_servers=broker.bootstrap_servers, kafka__partitions="2")
    env["MDPIPE_POSTGRES__DSN"] = make_database()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        sink = subprocess.Popen(
            [sys.executable, "-m", "mdpipe", "--log-format", "json", *argv, "--metrics-port", "0"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while ready not in stderr_path.read_text():
            assert sink.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.2)
        time.sleep(2)
        broker.kill()
        outage_s = 25.0
        time.sleep(outage_s)
        assert sink.poll() is None, stderr_path.read_text()  # the stage rides the outage out
    finally:
        os.killpg(sink.pid, signal.SIGKILL)
        sink.wait()
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line of stderr parses as JSON
    client = [r for r in records if r["event"] == "kafka_client"]
    assert client, "the outage reached the log through the project's logger"
    # the same kind of message as the filter sees it: without timings and librdkafka's own suppression counts
    per_kind = collections.Counter(
        (r["client"], r["fac"], re.sub(r"\([^)]*\)|\d+ms", "", r["message"])) for r in client
    )
    # rate limit: each kind of message at most once per 10 s (plus its first time): <= 4 in the 25 s outage
    # (the held-back count, `repeated`, is unit-tested: librdkafka's own back-off makes its timing vary here)
    assert max(per_kind.values()) <= 4, per_kind
    # the stage's own report of the client's errors (error_cb, error events) is rate-limited the same way
    own = collections.Counter(
        (r["event"], re.sub(r"\([^)]*\)|\d+ms", "", str(r.get("error", ""))))
        for r in records
        if r["event"] in ("kafka_error", "producer_error")
    )
    assert not own or max(own.values()) <= 4, own
    assert len(records) < 60, collections.Counter(r["event"] for r in records)  # the whole outage: a few dozen lines
