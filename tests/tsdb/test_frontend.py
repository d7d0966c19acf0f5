"""The wire-protocol front end (infra/pglite/server.mjs) in front of the one PGlite backend: COPY handed over whole,
connections taking turns at transaction boundaries, per-connection prepared statement names, a vanished client's
transaction rolled back, and a reopened data directory with TimescaleDB loaded."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from infra.pglite_timescale import PgliteServer

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(tsdb_server: PgliteServer) -> str:
    """A table of this test's own in the session's database: (n int, note text)."""
    name = f"fe_{time.monotonic_ns()}"
    with psycopg.connect(tsdb_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (n int NOT NULL, note text)")  # type: ignore[arg-type]
    return name


def test_binary_and_text_copy_and_a_failed_copy_leave_the_connection_usable(
    tsdb_server: PgliteServer, scratch: str
) -> None:
    with psycopg.connect(tsdb_server.dsn, autocommit=True) as conn:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY {scratch} (n, note) FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[arg-type]
                copy.set_types(["int4", "text"])
                for i in range(2_000):
                    copy.write_row((i, "x" * (i % 50)))
            with cur.copy(f"COPY {scratch} (n, note) FROM STDIN") as copy:  # type: ignore[arg-type]
                copy.write_row((-1, "text format"))
        with (
            pytest.raises(psycopg.errors.UndefinedTable),
            conn.cursor() as cur,
            cur.copy("COPY no_such_table (n) FROM STDIN") as copy,
        ):
            copy.write_row((1,))
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation),
            conn.cursor() as cur,
            cur.copy(f"COPY {scratch} (n) FROM STDIN") as copy,  # type: ignore[arg-type]
        ):
            copy.write(b"not a number\n")
        got = conn.execute(f"SELECT count(*), sum(n) FROM {scratch}").fetchone()  # type: ignore[arg-type]
        assert got == (2_001, sum(range(2_000)) - 1)
        with conn.cursor() as cur, cur.copy(f"COPY (SELECT n FROM {scratch} WHERE n < 3 ORDER BY n) TO STDOUT") as out:  # type: ignore[arg-type]
            assert b"".join(bytes(b) for b in out) == b"-1\n0\n1\n2\n"


def test_a_second_connection_waits_for_the_first_ones_transaction(tsdb_server: PgliteServer, scratch: str) -> None:
    seen: list[tuple[float, int]] = []

    def reader() -> None:
        with psycopg.connect(tsdb_server.dsn, autocommit=True) as other:
            count = other.execute(f"SELECT count(*) FROM {scratch}").fetchone()  # type: ignore[arg-type]
            assert count is not None
            seen.append((time.monotonic(), int(count[0])))

    with psycopg.connect(tsdb_server.dsn) as conn:
        conn.execute(f"INSERT INTO {scratch} VALUES (1, 'in a transaction')")  # type: ignore[arg-type]
        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(1.0)
        assert not seen  # its query waits: the one backend is inside this connection's transaction
        committed = time.monotonic()
        conn.commit()
        thread.join(timeout=30)
    assert len(seen) == 1 and seen[0][0] >= committed and seen[0][1] == 1  # it ran after, and saw, the commit


def test_two_connections_prepare_statements_of_the_same_name(tsdb_server: PgliteServer) -> None:
    """psycopg prepares a query run often enough as _pg3_0, _pg3_1, ... on each connection: one backend."""
    with psycopg.connect(tsdb_server.dsn, autocommit=True) as a, psycopg.connect(tsdb_server.dsn, autocommit=True) as b:
        for i in range(8):
            assert a.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert b.execute("SELECT %s::text || 'b'", (str(i),)).fetchone() == (f"{i}b",)
    with psycopg.connect(tsdb_server.dsn, autocommit=True) as conn:
        leftover = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    assert leftover == (0,)  # closed connections' statements are deallocated


def test_a_client_gone_inside_a_transaction_is_rolled_back(tsdb_server: PgliteServer, scratch: str) -> None:
    conn = psycopg.connect(tsdb_server.dsn)
    conn.execute(f"INSERT INTO {scratch} VALUES (7, 'never committed')")  # type: ignore[arg-type]
    conn.pgconn.finish()  # the socket closes without COMMIT or ROLLBACK
    with psycopg.connect(tsdb_server.dsn, autocommit=True, connect_timeout=10) as other:
        assert other.execute(f"SELECT count(*) FROM {scratch}").fetchone() == (0,)  # type: ignore[arg-type]
        assert other.execute("SELECT now() = statement_timestamp()").fetchone() == (True,)  # not in a transaction


def test_a_reopened_data_directory_has_timescaledb_loaded(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    server = PgliteServer(tmp_path / "pglite.log", data_dir=data).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("CREATE TABLE h (ts timestamptz NOT NULL, v int)")
            conn.execute("SELECT create_hypertable('h', 'ts', chunk_time_interval => INTERVAL '1 hour')")
            conn.execute("INSERT INTO h VALUES (%s, 1)", (ts,))
    finally:
        server.stop()
    server = PgliteServer(tmp_path / "pglite.log", data_dir=data).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO h VALUES (%s, 2)", (ts + timedelta(hours=3),))  # a new chunk: TimescaleDB's
            assert conn.execute("SELECT count(*) FROM show_chunks('h')").fetchone() == (2,)
            assert conn.execute("SELECT sum(v) FROM h").fetchone() == (3,)
    finally:
        server.stop()
