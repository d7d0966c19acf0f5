"""Lifecycle rows by any of their keys (sink.lifecycle) through the sink's real write path (Store + Batch)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from mdpipe.config import PostgresConfig
from schemas import Lifecycle, encode_event
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store, WriteResult
from venues import default_name

pytestmark = pytest.mark.integration

MS0 = 1_767_225_600_000


def ev(key: str, keys: list[str], market: str = "M1", alias: bool = False, details: str = "") -> Lifecycle:
    return Lifecycle(
        venue=default_name(),
        market=market,
        event_key=key,
        ts_ms=MS0,
        recv_ns=MS0 * 1_000_000,
        gatherer="g1",
        event_type="deactivated",
        details=details,
        keys=keys,
        alias=alias,
    )


class Sink:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.offset = 0

    def write(self, *events: Lifecycle) -> WriteResult:
        store = Store(self.dsn, "g-lc-keys")
        try:
            batch = Batch()
            batch.add_many([Source("events", 0, self.offset + i, encode_event(e)) for i, e in enumerate(events)])
            self.offset += len(events)
            return store.write(batch, lambda dead: None)
        finally:
            store.close()

    def rows(self) -> dict[str, list[str]]:
        with psycopg.connect(self.dsn) as conn:
            return {k: sorted(v) for k, v in conn.execute("SELECT event_key, keys FROM market_lifecycle").fetchall()}


@pytest.fixture
def sink(make_database: Callable[..., str]) -> Sink:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    return Sink(dsn)


def test_independent_events_are_stored_at_once_and_a_known_one_only_adds_its_keys(sink: Sink) -> None:
    result = sink.write(ev("a", ["a", "b"]), ev("c", []), ev("a2", ["a2", "b"], market="M2"))
    assert result.rows == {"market_lifecycle": 3} and result.duplicates == 0
    # x is the same event as a (shares b), e as c; d is new; a key shared with another market's row joins nothing
    result = sink.write(ev("x", ["x", "b"]), ev("d", ["d"]), ev("e", ["e", "c"]))
    assert result.rows == {"market_lifecycle": 1} and result.duplicates == 2
    with psycopg.connect(sink.dsn) as conn:
        rows = conn.execute("SELECT market, event_key, keys FROM market_lifecycle ORDER BY 1, 2").fetchall()
    assert rows == [
        ("M1", "a", ["a", "b", "x"]),
        ("M1", "c", ["c", "e"]),
        ("M1", "d", ["d"]),
        ("M2", "a2", ["a2", "b"]),
    ]


def test_records_in_one_batch_apply_in_order_through_an_alias(sink: Sink) -> None:
    # a live row keyed B, its alias bringing F, then a replay's copy keyed F alone: all in one batch (a replay's load)
    result = sink.write(ev("B", ["B", "B2"]), ev("F", ["F", "B"], alias=True), ev("F", ["F"]), ev("G", ["G"]))
    assert result.rows == {"market_lifecycle": 2} and result.duplicates == 1 and result.aliases == 1
    assert sink.rows() == {"B": ["B", "B2", "F"], "G": ["G"]}


def test_an_alias_without_its_row_stores_nothing(sink: Sink) -> None:
    result = sink.write(ev("F", ["F", "B"], alias=True))
    assert result.rows == {} and result.aliases == 1 and sink.rows() == {}


def test_a_rejected_lifecycle_row_is_a_dead_letter_and_the_others_are_stored(sink: Sink) -> None:
    result = sink.write(ev("a", ["a"]), ev("bad", ["bad"], details="{not json"), ev("c", ["c"]))
    assert [d.reason.split(":")[0] for d in result.dead] == ["market_lifecycle"]
    assert sorted(sink.rows()) == ["a", "c"]


def _rows_read_sequentially(dsn: str, written: int) -> int:
    """Rows of market_lifecycle read by sequential scans, once the statistics show ``written`` rows inserted or
    updated (a closed connection's counters reach the statistics when its backend exits)."""
    query = "SELECT n_tup_ins + n_tup_upd, seq_tup_read FROM pg_stat_user_tables WHERE relname = %s"
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            row = conn.execute(query, ("market_lifecycle",)).fetchone()
            assert row is not None
            if row[0] >= written or time.monotonic() > deadline:
                assert row[0] == written
                return int(row[1])
            time.sleep(0.05)


def test_a_batch_looks_up_its_lifecycle_records_by_market_not_by_reading_the_table(sink: Sink) -> None:
    """A sink that has run for weeks holds tens of thousands of lifecycle rows, a handful per market: a batch's lookups
    read its records' markets through the index, so what a batch costs does not grow with the table, also when the
    table's statistics are stale (taken while it held one market's rows: autovacuum off or behind). Before, the
    lookups were joins that hashed the whole table for every batch (the staging table has no statistics), and a first
    per-record version read the whole table per record under such statistics: docs/latency-budget.md, "Lifecycle
    lookups by market"."""
    insert = (
        "INSERT INTO market_lifecycle (ts, market, event_key, gatherer, received_at, event_type, venue, keys)"
        " SELECT to_timestamp(1.6e9 + i), 'P-' || (i %% %s), 'earlier:' || i, 'g1', to_timestamp(1.6e9 + i),"
        " 'created', %s, ARRAY['earlier:' || i] FROM generate_series(%s::int, %s::int) AS i"
    )
    earlier = 20_000
    with psycopg.connect(sink.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE market_lifecycle SET (autovacuum_enabled = false)")
        conn.execute(insert, (1, default_name(), 1, 200))  # 200 rows of one market, analysed
        conn.execute("ANALYZE market_lifecycle")
        conn.execute(insert, (5000, default_name(), 201, earlier))  # then 5,000 markets, four rows each
    seq_before = _rows_read_sequentially(sink.dsn, earlier)
    # one new event, and one already stored under another of its keys (its new key is added to the row)
    result = sink.write(ev("new", ["new"], market="P-3"), ev("x", ["x", "earlier:5007"], market="P-7"))
    assert result.rows == {"market_lifecycle": 1} and result.duplicates == 1
    assert _rows_read_sequentially(sink.dsn, earlier + 2) == seq_before  # the row inserted, the row given a key
    # a batch whose records apply one at a time (an alias in it): the same lookups by market
    result = sink.write(ev("y", ["y", "new"], market="P-3", alias=True))
    assert result.aliases == 1
    assert _rows_read_sequentially(sink.dsn, earlier + 3) == seq_before
    with psycopg.connect(sink.dsn) as conn:
        keys = dict(conn.execute("SELECT event_key, keys FROM market_lifecycle WHERE market IN ('P-3', 'P-7')"))
    assert keys["earlier:5007"] == ["earlier:5007", "x"] and keys["new"] == ["new", "y"]
