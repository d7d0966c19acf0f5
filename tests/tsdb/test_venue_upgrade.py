"""Migrations 0008 (the venue column) and 0009 (bars per venue) upgrading a TimescaleDB database at 0007 whose rows
sit in compressed chunks: every row kept with its venue filled, the chunks compressed again, a replay into them
absorbed, another venue's events with the same keys landing, and bars_1m per venue with its refresh policy.

The tier's session database is already fully migrated, so this module starts a PGlite server of its own (one more
Node process for the module's duration) and migrates it to 0007 only."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from bench.sink.data import make_events
from infra.pglite_timescale import PgliteServer
from schemas import Event, Trade
from sink import migrate as migrate_module
from sink.migrate import HYPERTABLES
from tests.sink.conftest import expected_tables, read_tables, write_as_before_venue
from tests.tsdb.conftest import TSDB
from tests.tsdb.test_sink_timescale import _ohlcv, write

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = int(datetime(2026, 2, 1, 12, tzinfo=UTC).timestamp() * 1000)
OTHER_VENUE = "venue-b"


@pytest.fixture(scope="module")
def at_0007(tsdb_server: PgliteServer) -> Iterator[str]:
    """The dsn of a fresh PGlite TimescaleDB migrated up to 0007 (tsdb_server: the tier's skip/fail rules)."""
    with tempfile.TemporaryDirectory(prefix="mdpipe-tsdb-upgrade-") as tmp:
        server = PgliteServer(Path(tmp) / "pglite.log").start()
        try:
            real = migrate_module.discover
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(migrate_module, "discover", lambda *a: [m for m in real(*a) if m.version <= 7])
                assert migrate_module.migrate(server.dsn, TSDB).applied == [1, 2, 3, 4, 6, 7]
            yield server.dsn
        finally:
            server.stop()


def _history() -> list[Event]:
    """Every event type over three days (three chunks per hypertable)."""
    events = make_events(600, markets=4, seed=41, start_ms=T0)
    return [msgspec.structs.replace(e, ts_ms=e.ts_ms + (i % 3) * DAY_MS) for i, e in enumerate(events)]


def _chunks(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """{chunk: is_compressed} of every event hypertable."""
    rows = conn.execute(
        "SELECT format('%%I.%%I', chunk_schema, chunk_name), is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = ANY(%s)",
        (list(HYPERTABLES),),
    ).fetchall()
    return dict(rows)


def _bars(conn: psycopg.Connection[Any]) -> dict[tuple[str, str, datetime], list[Any]]:
    rows = conn.execute("SELECT venue, market, bucket, open, high, low, close, volume, trades FROM bars_1m").fetchall()
    return {(vn, m, b): [o, h, low, c, v, n] for vn, m, b, o, h, low, c, v, n in rows}


def test_0008_and_0009_upgrade_a_database_with_compressed_chunks(
    at_0007: str, make_database: Callable[[], str]
) -> None:
    dsn = at_0007
    events = _history()
    venue = events[0].venue
    write_as_before_venue(dsn, make_database(), events)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for chunk in _chunks(conn):
            conn.execute("SELECT compress_chunk(%s::regclass)", (chunk,))
        chunks = _chunks(conn)
        assert len(chunks) == 3 * len(HYPERTABLES) and all(chunks.values())
        conn.execute("CALL refresh_continuous_aggregate('bars_1m', NULL, NULL)")  # a user had filled the bars
        assert conn.execute("SELECT count(*) FROM bars_1m").fetchone() != (0,)
    before = read_tables(dsn, venue=False)
    assert sum(len(rows) for rows in before.values()) == len(events)

    assert migrate_module.migrate(dsn, TSDB, venue).applied == [8, 9, 10, 11, 12, 13]
    assert read_tables(dsn, venue=False) == before  # every row, every column, exactly
    assert read_tables(dsn) == expected_tables(events)  # and each row's venue is the events' venue
    with psycopg.connect(dsn) as conn:
        assert _chunks(conn) == chunks  # the same chunks, compressed again

    replay = write(dsn, events, group="tsdb-upgrade")  # into compressed chunks only: absorbed under the new key
    assert replay.duplicates == len(events) and sum(replay.rows.values()) == 0 and not replay.dead
    assert read_tables(dsn) == expected_tables(events)

    other = [msgspec.structs.replace(e, venue=OTHER_VENUE) for e in events]  # the same keys at another venue
    landed = write(dsn, other, group="tsdb-upgrade")
    assert landed.duplicates == 0 and sum(landed.rows.values()) == len(events) and not landed.dead
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in HYPERTABLES:
            counts = dict(conn.execute(f"SELECT venue, count(*) FROM {table} GROUP BY venue").fetchall())  # type: ignore[arg-type]
            assert counts == {venue: len(before[table]), OTHER_VENUE: len(before[table])}, table

        # bars_1m per venue (0009): recreated empty with its bounded refresh policy; the refresh by hand fills it
        jobs = conn.execute(
            "SELECT config->>'start_offset', config->>'end_offset' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = 'bars_1m'"
        ).fetchall()
        assert jobs == [("7 days", "00:01:00")]
        assert _bars(conn) == {}
        conn.execute("CALL refresh_continuous_aggregate('bars_1m', NULL, NULL)")
        trades = [e for e in (*events, *other) if isinstance(e, Trade)]
        assert _bars(conn) == _ohlcv(trades) and {v for v, _, _ in _bars(conn)} == {venue, OTHER_VENUE}
    assert migrate_module.migrate(dsn, TSDB, venue).applied == []
