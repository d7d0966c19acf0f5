"""The sink's TimescaleDB mode against a real (test-only) TimescaleDB: every migration, a load through the sink's
own write path (binary COPY, sink.store.Store), a replay absorbed, compression with a replay into a compressed
chunk, retention through its policy job (run by hand: no background workers here), book_at on hypertables, and
the 1-minute bars continuous aggregate refreshed by its policy job. Each test keeps to its own time range."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest

from bench.sink.data import BASE_MS, make_events
from schemas import BookDelta, BookSnapshot, Event, Trade, encode_event
from sink import book as pybook
from sink.batch import Batch, Source
from sink.migrate import HYPERTABLES, discover, migrate
from sink.store import Store, WriteResult
from tests.sink.conftest import expected_tables
from tests.sink.test_readme_queries import _examples as readme_examples
from tests.tsdb.conftest import TSDB, read_range, utc_ms
from venues import default_name

pytestmark = pytest.mark.integration

LOAD_EVENTS = 3_000
LOAD_LO, LOAD_HI = utc_ms(BASE_MS), utc_ms(BASE_MS + LOAD_EVENTS)
BARS_COLUMNS = ["venue", "market", "bucket", "open", "high", "low", "close", "volume", "trades"]


def write(dsn: str, events: Sequence[Event], group: str = "tsdb") -> WriteResult:
    """One batch through the sink's store (binary COPY; staging + ON CONFLICT when a row is already there)."""
    store = Store(dsn, group)
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events)])
        return store.write(batch, lambda dead: None)
    finally:
        store.close()


def job_id(conn: psycopg.Connection[Any], proc: str, table: str) -> int:
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s AND hypertable_name = %s",
        (proc, table),
    ).fetchone()
    assert row is not None, f"no {proc} job for {table}"
    return int(row[0])


def trade(key: str, market: str, ts: datetime, price: str, count: int, venue: str | None = None) -> Trade:
    ms = int(ts.timestamp() * 1000)
    return Trade(
        venue=venue or default_name(),
        market=market,
        ts_ms=ms,
        recv_ns=ms * 1_000_000,
        gatherer="g1",
        event_key=key,
        trade_id=key,
        yes_price=Decimal(price),
        no_price=Decimal(1) - Decimal(price),
        count=Decimal(count),
    )


@pytest.fixture(scope="module")
def loaded(tsdb_dsn: str) -> list[Event]:
    events = make_events(LOAD_EVENTS, markets=3, seed=31, start_ms=BASE_MS)
    result = write(tsdb_dsn, events)
    assert not result.dead and not result.slow_path and result.duplicates == 0
    return events


# --- migrations -------------------------------------------------------------------------------------------------
def test_every_migration_applies_in_timescale_mode_and_again_is_a_no_op(tsdb_migrated: tuple[str, Any]) -> None:
    dsn, first = tsdb_migrated
    wanted = sorted({m.version for m in discover() if m.variant in (None, "timescale")})
    assert first.mode == "timescale" and first.applied == wanted
    again = migrate(dsn, TSDB)
    assert again.mode == "timescale" and again.applied == []
    with psycopg.connect(dsn) as conn:
        tables = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
            )
        }
        assert {t: tables.get(t) for t in HYPERTABLES} == dict.fromkeys(HYPERTABLES, True)
        variants = dict(conn.execute("SELECT version, variant FROM schema_migrations").fetchall())
        assert variants[7] == "timescale" and variants[9] == "timescale"
        cagg = conn.execute(
            "SELECT materialized_only FROM timescaledb_information.continuous_aggregates WHERE view_name = 'bars_1m'"
        ).fetchone()
        assert cagg == (True,)
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'bars_1m'::regclass AND attnum > 0 ORDER BY attnum"
            )
        ]
        assert cols == BARS_COLUMNS  # the plain-mode materialized view's columns (0008_venue_column.sql)
        policies = {r[0] for r in conn.execute("SELECT proc_name FROM timescaledb_information.jobs")}
        assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= policies
        assert "policy_retention" not in policies  # retention is off by default: an archive keeps everything


def test_every_hypertable_and_chunk_has_one_btree_the_market_first_unique_key(
    tsdb_dsn: str, loaded: list[Event]
) -> None:
    # 0013: the unique key that absorbs replays also serves per-market reads; no second b-tree per row
    with psycopg.connect(tsdb_dsn) as conn:
        for table in HYPERTABLES:
            chunks = [
                r[0]
                for r in conn.execute(
                    "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = %s"
                    " AND NOT is_compressed",
                    (table,),
                )
            ]
            assert chunks, table  # loaded: every table has rows in an uncompressed chunk
            for name in [table, *chunks]:
                defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (name,))]
                assert len(defs) == 1 and "UNIQUE" in defs[0], (name, defs)
                assert defs[0].endswith("USING btree (market, ts, event_key, venue)"), (name, defs)


# --- load, replay, compression ----------------------------------------------------------------------------------
def test_the_sink_loads_every_event_exactly(tsdb_dsn: str, loaded: list[Event]) -> None:
    assert read_range(tsdb_dsn, LOAD_LO, LOAD_HI) == expected_tables(loaded)


def test_a_replay_is_absorbed(tsdb_dsn: str, loaded: list[Event]) -> None:
    result = write(tsdb_dsn, loaded[:500], group="tsdb-replay")
    assert result.slow_path and result.duplicates == 500 and sum(result.rows.values()) == 0 and not result.dead
    assert read_range(tsdb_dsn, LOAD_LO, LOAD_HI) == expected_tables(loaded)


def test_compressed_chunks_absorb_a_replay_and_take_new_rows(tsdb_dsn: str, loaded: list[Event]) -> None:
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        chunks = []
        for table in HYPERTABLES:
            chunks += [
                r[0]
                for r in conn.execute(
                    f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE ts >= %s AND ts < %s",  # type: ignore[arg-type]
                    (LOAD_LO, LOAD_HI),
                )
            ]
        assert len(chunks) == len(HYPERTABLES)
        for chunk in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed"
            " AND format('%%I.%%I', chunk_schema, chunk_name) = ANY(%s)",
            (chunks,),
        ).fetchone()
        assert compressed == (len(chunks),)
    replayed = write(tsdb_dsn, loaded, group="tsdb-compressed")
    assert replayed.duplicates == len(loaded) and sum(replayed.rows.values()) == 0 and not replayed.dead
    last_trade = next(e for e in reversed(loaded) if isinstance(e, Trade))  # a trade: the books stay as loaded
    # a new row in the same (compressed, 1-hour) chunk, past the loaded range so that other tests' view stays as loaded
    late_ms = BASE_MS + LOAD_EVENTS + 60_000
    late = msgspec.structs.replace(last_trade, event_key="late:compressed", ts_ms=late_ms)
    mixed = write(tsdb_dsn, [loaded[0], late], group="tsdb-compressed")
    assert mixed.duplicates == 1 and sum(mixed.rows.values()) == 1
    assert read_range(tsdb_dsn, LOAD_LO, LOAD_HI) == expected_tables(loaded)
    assert read_range(tsdb_dsn, utc_ms(late_ms), utc_ms(late_ms + 1)) == expected_tables([late])
    with psycopg.connect(tsdb_dsn) as conn:
        chunk = conn.execute(
            "SELECT tableoid::regclass::text FROM trades WHERE event_key = 'late:compressed'"
        ).fetchone()
    assert chunk is not None and chunk[0] in chunks


def test_book_at_on_hypertables_is_the_pure_rebuild(tsdb_dsn: str, loaded: list[Event]) -> None:
    """0006 (book_at, written with plain mode in view) on hypertables, against sink/book.py's rebuild."""
    market = loaded[-1].market
    snaps = [
        pybook.SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys))
        for e in loaded
        if isinstance(e, BookSnapshot) and e.market == market
    ]
    deltas = [
        pybook.DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta)
        for e in loaded
        if isinstance(e, BookDelta) and e.market == market
    ]
    at_ms = BASE_MS + LOAD_EVENTS - 1
    want = pybook.book_at(snaps, deltas, at_ms)
    assert want is not None
    with psycopg.connect(tsdb_dsn) as conn:
        rows = conn.execute("SELECT side, price, size FROM book_at(%s, %s)", (market, utc_ms(at_ms))).fetchall()
        top = conn.execute(
            "SELECT count(*) FROM top_of_book WHERE market = %s AND ts >= %s AND ts < %s", (market, LOAD_LO, LOAD_HI)
        ).fetchone()
    got = pybook.Book()
    for side, price, size in rows:
        (got.yes if side == "yes" else got.no)[price] = size
    assert got.normalised() == want.normalised() and len(rows) == len(want.yes) + len(want.no)
    assert top is not None and top[0] > 0


# --- retention ----------------------------------------------------------------------------------------------------
def test_retention_is_off_by_default_and_its_job_drops_old_chunks_when_set(tsdb_dsn: str) -> None:
    old = [
        trade(f"ret:{i}", "KXRET", datetime(2001, 3, 1, tzinfo=UTC) + timedelta(hours=i), "0.5", 1) for i in range(3)
    ]
    assert sum(write(tsdb_dsn, old, group="tsdb-retention").rows.values()) == 3
    since_2016 = "SELECT count(*) FROM trades WHERE ts >= '2016-01-01'"
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        kept_before = conn.execute(since_2016).fetchone()
        migrate(tsdb_dsn, TSDB)  # re-applies the policies: default retention "off"
        assert not conn.execute(
            "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()
        migrate(tsdb_dsn, msgspec.structs.replace(TSDB, retention="10 years"))
        conn.execute("CALL run_job(%s)", (job_id(conn, "policy_retention", "trades"),))
        assert conn.execute("SELECT count(*) FROM trades WHERE market = 'KXRET'").fetchone() == (0,)
        assert conn.execute(since_2016).fetchone() == kept_before
        migrate(tsdb_dsn, TSDB)  # back to keeping everything
        assert not conn.execute(
            "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()


# --- bars: continuous aggregate ---------------------------------------------------------------------------------
def _ohlcv(trades: Sequence[Trade]) -> dict[tuple[str, str, datetime], list[Any]]:
    want: dict[tuple[str, str, datetime], list[Any]] = {}
    for e in sorted(trades, key=lambda e: (e.ts_ms, e.event_key)):
        bucket = utc_ms(e.ts_ms // 60_000 * 60_000)
        bar = want.setdefault((e.venue, e.market, bucket), [e.yes_price, e.yes_price, e.yes_price, 0, 0, 0])
        bar[1], bar[2], bar[3] = max(bar[1], e.yes_price), min(bar[2], e.yes_price), e.yes_price
        bar[4] += e.count
        bar[5] += 1
    return want


def _bars(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> dict[tuple[str, str, datetime], list[Any]]:
    rows = conn.execute(
        "SELECT venue, market, bucket, open, high, low, close, volume, trades FROM bars_1m"
        " WHERE bucket >= %s AND bucket < %s",
        (lo, hi),
    ).fetchall()
    return {(vn, m, b): [o, h, low, c, v, n] for vn, m, b, o, h, low, c, v, n in rows}


def test_bars_are_a_continuous_aggregate_refreshed_by_its_policy(tsdb_dsn: str) -> None:
    # inside the policy's window (the last 7 days up to a minute ago): 40 to 30 minutes ago
    lo = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    hi = lo + timedelta(minutes=10)
    trades = []
    for i in range(120):
        ts = lo + timedelta(seconds=5 * (i // 2))  # pairs share a ts: open/close break the tie on event_key
        venue = "venue-b" if i % 4 == 3 else None  # another venue's trades of the same markets: bars of their own
        trades.append(trade(f"bar:{i:03d}", f"KXBAR-{i % 3}", ts, f"0.{10 + (i * 37) % 80:02d}", 1 + i % 7, venue))
    assert sum(write(tsdb_dsn, trades, group="tsdb-bars").rows.values()) == len(trades)
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        assert _bars(conn, lo, hi) == {}  # materialized only: nothing before a refresh
        refresh = job_id(conn, "policy_refresh_continuous_aggregate", "bars_1m")
        conn.execute("CALL run_job(%s)", (refresh,))
        assert _bars(conn, lo, hi) == _ohlcv(trades)
        assert {vn for vn, _, _ in _bars(conn, lo, hi)} == {default_name(), "venue-b"}
        # a late trade (a replay from an older offset) in an already materialized minute: the next run picks it up
        late = trade("bar:late", "KXBAR-0", lo + timedelta(minutes=2, seconds=1), "0.99", 50)
        assert sum(write(tsdb_dsn, [late], group="tsdb-bars").rows.values()) == 1
        conn.execute("CALL run_job(%s)", (refresh,))
        assert _bars(conn, lo, hi) == _ohlcv([*trades, late])
        # older than the policy's window: the documented refresh by hand
        old_lo = lo - timedelta(days=30)
        old = [trade(f"bar:old:{i}", "KXBAR-0", old_lo + timedelta(seconds=i), "0.42", 2) for i in range(3)]
        assert sum(write(tsdb_dsn, old, group="tsdb-bars").rows.values()) == len(old)
        conn.execute("CALL run_job(%s)", (refresh,))
        assert _bars(conn, old_lo, old_lo + timedelta(minutes=1)) == {}
        conn.execute("CALL refresh_continuous_aggregate('bars_1m', NULL, NULL)")
        assert _bars(conn, old_lo, old_lo + timedelta(minutes=1)) == _ohlcv(old)
        assert _bars(conn, lo, hi) == _ohlcv([*trades, late])


# --- the README's example queries ------------------------------------------------------------------------------
PLAIN_REFRESH = "REFRESH MATERIALIZED VIEW bars_1m"


@pytest.mark.parametrize("index", range(len(readme_examples())))
def test_the_readme_example_queries_run_in_timescale_mode(tsdb_dsn: str, loaded: list[Event], index: int) -> None:
    """The README's data-dictionary queries (written for both modes; tests/sink/test_readme_queries.py runs them in
    plain mode) on hypertables and the bars continuous aggregate; the plain refresh of bars_1m is the continuous
    aggregate's refresh here."""
    statements = [s.strip().rstrip(";") for s in readme_examples()[index].split(";\n") if s.strip()]
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        for statement in statements:
            if statement.startswith(PLAIN_REFRESH):
                statement = "CALL refresh_continuous_aggregate('bars_1m', NULL, NULL)"
            cur = conn.execute(statement)  # type: ignore[arg-type]
        rows = cur.fetchall()
    assert rows, statements[-1]
