"""Partitioned event tables in plain PostgreSQL (migration 0005, sink.partitions): layout of a fresh database, the
in-place upgrade of a database made by the older migrations, rows outside every range, replays absorbed per
partition, retention by whole partitions, and the range arithmetic (unit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from bench.sink.data import make_events
from mdpipe.config import ConfigError, PostgresConfig
from schemas import encode_event
from sink import migrate as migrate_module
from sink.partitions import PARTITIONED, Partition, bucket, clip, maintain, partition_name, partitions
from tests.sink.conftest import expected_tables, read_tables, write_as_before_venue

DAY = 86_400
PLAIN = PostgresConfig(timescaledb="off")
UNPARTITIONED = ("market_lifecycle", "coverage_gaps")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _write(dsn: str, events: list[Any], group: str = "g-part", first_offset: int = 0) -> Any:
    from sink.batch import Batch, Source
    from sink.store import Store

    store = Store(dsn, group)
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, first_offset + i, encode_event(e)) for i, e in enumerate(events)])
        return store.write(batch, lambda dead: None)
    finally:
        store.close()


def _old_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make migrate() see only the migrations a database had before partitioning (0001-0004)."""
    real = migrate_module.discover
    monkeypatch.setattr(migrate_module, "discover", lambda *a: [m for m in real(*a) if m.version <= 4])


def _relkind(conn: psycopg.Connection[Any], table: str) -> str:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    assert row is not None
    return str(row[0])


# -- unit: range arithmetic ---------------------------------------------------------------------------------------


def test_bucket_aligns_to_the_epoch_in_utc() -> None:
    assert bucket(_utc(2026, 12, 3, 11, 50), DAY) == (_utc(2026, 12, 3), _utc(2026, 12, 4))
    assert bucket(_utc(2026, 12, 3), DAY) == (_utc(2026, 12, 3), _utc(2026, 12, 4))
    assert bucket(_utc(2026, 12, 3, 11, 50), 3600) == (_utc(2026, 12, 3, 11), _utc(2026, 12, 3, 12))
    assert bucket(_utc(1969, 12, 31, 23), DAY) == (_utc(1969, 12, 31), _utc(1970, 1, 1))


def test_clip_keeps_only_the_uncovered_parts() -> None:
    lo, hi = _utc(2026, 1, 1), _utc(2026, 1, 2)
    assert clip(lo, hi, []) == [(lo, hi)]
    assert clip(lo, hi, [Partition("d", None, None)]) == [(lo, hi)]  # the default partition covers no range
    legacy = Partition("t_legacy", _utc(2025, 12, 1), _utc(2026, 1, 1, 6))
    assert clip(lo, hi, [legacy]) == [(_utc(2026, 1, 1, 6), hi)]
    inner = Partition("x", _utc(2026, 1, 1, 6), _utc(2026, 1, 1, 7))
    assert clip(lo, hi, [inner]) == [(lo, _utc(2026, 1, 1, 6)), (_utc(2026, 1, 1, 7), hi)]
    assert clip(lo, hi, [Partition("all", _utc(2025, 1, 1), _utc(2027, 1, 1))]) == []


def test_partition_names_follow_the_lower_bound() -> None:
    assert partition_name("trades", _utc(2026, 12, 3)) == "trades_p20261203"
    assert partition_name("trades", _utc(2026, 12, 3, 11)) == "trades_p20261203_110000"


def test_retention_is_off_by_default_in_both_modes() -> None:
    assert PostgresConfig().retention == "off"


# -- integration ---------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_fresh_database_has_partitioned_event_tables(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(dsn) as conn:
        for table in PARTITIONED:
            assert _relkind(conn, table) == "p", table
            parts = partitions(conn, table)
            ranges = {(p.lower, p.upper) for p in parts if not p.is_default}
            for days in (-1, 0, 1, 2):  # yesterday, today and partitions_ahead (2) days ahead
                lo = today + timedelta(days=days)
                assert (lo, lo + timedelta(days=1)) in ranges, (table, days)
            assert [p.name for p in parts if p.is_default] == [f"{table}_default"]
            for p in parts:
                _assert_one_key(conn, p.name)
        for table in UNPARTITIONED:
            assert _relkind(conn, table) == "r", table


def _assert_one_key(conn: psycopg.Connection[Any], partition: str) -> None:
    """A partition has ONE b-tree, the unique key that absorbs replays and serves per-market reads (0013), and the
    BRIN on ts; the older keys (event_key first) and the (market, ts) index are gone."""
    defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (partition,))]
    btrees = [d for d in defs if "USING btree" in d]
    assert len(btrees) == 1 and "UNIQUE" in btrees[0], (partition, defs)
    assert btrees[0].endswith("(market, ts, event_key, venue)"), (partition, defs)
    assert [d for d in defs if "USING brin" in d and d.endswith("(ts)")], (partition, defs)


def _before_partitioning(make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, events: list[Any]) -> str:
    """A database migrated to 0004 (before partitioning) holding ``events`` as the sink of then wrote them."""
    dsn = make_database()
    with monkeypatch.context() as patch:
        _old_migrations(patch)
        assert migrate_module.migrate(dsn, PLAIN).applied == [1, 2, 3, 4]
    write_as_before_venue(dsn, make_database(), events)
    return dsn


@pytest.mark.integration
def test_upgrade_in_place_keeps_every_row_and_absorbs_replays(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # three days of every event type in the old (unpartitioned, venue-less) layout, as the sink of then wrote them
    old_events = make_events(3000, markets=20, seed=5, start_ms=_ms(_utc(2026, 3, 1, 22)))
    old_events = [msgspec.structs.replace(e, ts_ms=e.ts_ms + (i % 3) * DAY * 1000) for i, e in enumerate(old_events)]
    dsn = _before_partitioning(make_database, monkeypatch, old_events)
    before = read_tables(dsn, venue=False)
    venue = old_events[0].venue
    with psycopg.connect(dsn) as conn:
        assert _relkind(conn, "trades") == "r"

    assert migrate_module.migrate(dsn, PLAIN, venue).applied == [5, 6, 7, 8, 10, 11, 12, 13]
    assert read_tables(dsn, venue=False) == before  # every row, every column, exactly
    assert read_tables(dsn) == expected_tables(old_events)  # ... and its venue
    with psycopg.connect(dsn) as conn:
        for table in PARTITIONED:
            assert _relkind(conn, table) == "p", table
            legacy = next(p for p in partitions(conn, table) if p.name == f"{table}_legacy")
            assert (legacy.lower, legacy.upper) == (_utc(2026, 3, 1), _utc(2026, 3, 4)), table  # aligned days
            for p in partitions(conn, table):  # the legacy table's own indexes (renamed by 0005) went too
                _assert_one_key(conn, p.name)
    # a replay of the same events is absorbed by the per-partition unique key; new events land beside them
    replay = _write(dsn, old_events, first_offset=10_000)
    assert replay.duplicates == len(old_events)
    assert read_tables(dsn, venue=False) == before
    new_events = make_events(500, markets=20, seed=6, start_ms=_ms(datetime.now(UTC)))
    new_events = [msgspec.structs.replace(e, event_key=f"new:{e.event_key}") for e in new_events]
    assert _write(dsn, new_events, first_offset=20_000).duplicates == 0
    counts = {t: len(rows) for t, rows in read_tables(dsn).items()}
    assert sum(counts.values()) == len(old_events) + len(new_events)
    assert migrate_module.migrate(dsn, PLAIN, venue).applied == []  # idempotent


@pytest.mark.integration
def test_a_database_made_by_the_first_0002_upgrades_too(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the project's first 0002 (plain mode) also made a (market, ts) b-tree on each table, under the name 0005 gives
    # the partitioned table's index: 0005 must move it aside (it stopped with DuplicateTable before)
    events = make_events(600, markets=5, seed=9, start_ms=_ms(_utc(2026, 3, 2, 12)))
    dsn = _before_partitioning(make_database, monkeypatch, events)
    with psycopg.connect(dsn) as conn:
        for table in PARTITIONED:
            conn.execute(f"CREATE INDEX {table}_market_ts ON {table} (market, ts)")  # type: ignore[arg-type]
    before = read_tables(dsn, venue=False)
    assert migrate_module.migrate(dsn, PLAIN, events[0].venue).applied == [5, 6, 7, 8, 10, 11, 12, 13]
    assert read_tables(dsn, venue=False) == before
    with psycopg.connect(dsn) as conn:
        for table in PARTITIONED:
            assert f"{table}_legacy" in [p.name for p in partitions(conn, table)], table
            for p in partitions(conn, table):
                _assert_one_key(conn, p.name)


@pytest.mark.integration
def test_rows_outside_every_range_are_kept_then_moved_into_their_own_partition(
    make_database: Callable[[], str],
) -> None:
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    stray = make_events(400, markets=5, seed=7, start_ms=_ms(_utc(2001, 9, 9, 1)))  # far outside the ranges
    result = _write(dsn, stray)  # the sink's COPY does not fail: the default partition takes them
    assert result.duplicates == 0 and not result.dead
    before = read_tables(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orderbook_deltas_default").fetchone()[0] > 0  # type: ignore[index]
        done = maintain(conn, PLAIN)
        assert "orderbook_deltas_p20010909" in done.created and done.moved["orderbook_deltas"] > 0
        for table in PARTITIONED:
            assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone()[0] == 0  # type: ignore[index]
            here = conn.execute(f"SELECT count(*) FROM {table}_p20010909").fetchone()[0]  # type: ignore[index]
            assert here == len(before[table]), table
    assert read_tables(dsn) == before
    assert _write(dsn, stray, first_offset=1000).duplicates == len(stray)  # the replay is absorbed there too


@pytest.mark.integration
def test_a_range_created_ahead_takes_the_rows_already_in_the_default_partition(
    make_database: Callable[[], str],
) -> None:
    """A row ahead of the created ranges (a clock ahead) sits in the default partition; creating its range later
    (the timer, as the clock moves on) must not fail on it and moves it in."""
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    ahead = datetime.now(UTC) + timedelta(days=10)
    events = make_events(50, markets=3, seed=8, start_ms=_ms(ahead))
    _write(dsn, events)
    before = read_tables(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        maintain(conn, PLAIN, now=ahead)
        name = partition_name("trades", bucket(ahead, DAY)[0])
        assert conn.execute("SELECT count(*) FROM trades_default").fetchone()[0] == 0  # type: ignore[index]
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == len(before["trades"])  # type: ignore[index]
    assert read_tables(dsn) == before


@pytest.mark.integration
def test_retention_drops_whole_old_partitions_only_when_set(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    now = datetime.now(UTC)
    old = make_events(300, markets=5, seed=9, start_ms=_ms(now - timedelta(days=9)))
    recent = make_events(300, markets=5, seed=10, start_ms=_ms(now))
    _write(dsn, old)
    _write(dsn, recent, first_offset=1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        kept = maintain(conn, PLAIN, now=now)  # retention off (the default): nothing dropped
        assert kept.dropped == []
        n_old = conn.execute("SELECT count(*) FROM trades WHERE ts < now() - interval '8 days'").fetchone()[0]  # type: ignore[index]
        assert n_old > 0
        done = maintain(conn, msgspec.structs.replace(PLAIN, retention="7 days"), now=now)
        old_day = partition_name("trades", bucket(now - timedelta(days=9), DAY)[0])
        assert old_day in done.dropped
        assert conn.execute("SELECT count(*) FROM trades WHERE ts < now() - interval '8 days'").fetchone()[0] == 0  # type: ignore[index]
        assert {p.name for p in partitions(conn, "trades")} >= {
            "trades_default",
            partition_name("trades", bucket(now, DAY)[0]),
        }
    assert sum(len(r) for t, r in read_tables(dsn).items() if t in PARTITIONED) == sum(
        1 for e in recent if type(e).__name__ in ("BookSnapshot", "BookDelta", "Trade", "Ticker")
    )


@pytest.mark.integration
def test_calendar_partition_interval_is_refused(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    with pytest.raises(ConfigError, match="partition_interval"):
        migrate_module.migrate(dsn, msgspec.structs.replace(PLAIN, partition_interval="1 month"))


@pytest.mark.integration
def test_a_check_that_cannot_get_the_lock_skips_the_table_and_blocks_nothing_for_long(
    make_database: Callable[[], str],
) -> None:
    """A sink transaction open on a table: the check waits at most the lock timeout, skips that table (retried at
    the next check) and handles the others; the open transaction then commits normally."""
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    stray = make_events(300, markets=3, seed=11, start_ms=_ms(_utc(2001, 9, 9, 1)))
    _write(dsn, stray)
    with psycopg.connect(dsn) as sink_conn, psycopg.connect(dsn, autocommit=True) as conn:
        sink_conn.execute("SELECT count(*) FROM trades")  # an open transaction holding a lock on trades
        done = maintain(conn, PLAIN)
        assert done.skipped == ["trades"]
        assert "orderbook_deltas_p20010909" in done.created and "trades_p20010909" not in done.created
        sink_conn.commit()
        again = maintain(conn, PLAIN)
        assert again.skipped == [] and "trades_p20010909" in again.created


@pytest.mark.integration
def test_the_sinks_timer_creates_ranges_as_the_clock_needs_them(make_database: Callable[[], str]) -> None:
    """The sink's MaintenanceThread (started by `mdpipe sink`) re-creates a missing range at its next check."""
    import time

    from sink.partitions import MaintenanceThread

    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    today = partition_name("trades", bucket(datetime.now(UTC), DAY)[0])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {today}")
    thread = MaintenanceThread(dsn, msgspec.structs.replace(PLAIN, partition_check_s=0.2)).start()
    try:
        deadline = time.monotonic() + 10
        with psycopg.connect(dsn, autocommit=True) as conn:
            while today not in {p.name for p in partitions(conn, "trades")}:
                assert time.monotonic() < deadline, "the timer did not re-create today's range"
                time.sleep(0.1)
    finally:
        thread.stop()
