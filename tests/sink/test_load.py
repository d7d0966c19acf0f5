"""Sink against the real broker and database: exact values, duplicates, dead letters, markets, replay, two sinks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest
from confluent_kafka import Consumer

from bench.sink.data import BASE_MS, make_events
from mdpipe.config import Config
from mdpipe.kafka import consumer_config
from schemas import BookDelta, BookSnapshot, Lifecycle, MarketRef, Ticker, Trade, decode_dead_letter, encode_event
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

pytestmark = pytest.mark.integration

EDGE = {"venue": VENUE, "gatherer": "g2"}
NS = 1_767_225_600_123_456_789


def _edge_events() -> list[Any]:
    """Shapes the generator rarely produces: all-None ticker, empty book, every lifecycle time set, big numbers."""
    return [
        Ticker(**EDGE, market="KX-E1", event_key="k:e1", ts_ms=BASE_MS - 5, recv_ns=(BASE_MS - 5) * 10**6 + 1),
        BookSnapshot(**EDGE, market="KX-E2", event_key="s:e2", ts_ms=BASE_MS - 4, recv_ns=(BASE_MS - 4) * 10**6),
        Lifecycle(
            **EDGE,
            market="KX-E3",
            event_key="l:e3",
            ts_ms=BASE_MS - 3,
            recv_ns=(BASE_MS - 3) * 10**6 + 999_999,
            event_type="determined",
            open_ts=1_767_000_000,
            close_ts=1_767_100_000,
            determination_ts=1_767_200_000,
            settled_ts=1_767_300_000,
            result="yes",
            settlement_value=Decimal("0.5000"),
            is_deactivated=True,
            details='{"a":[1,2],"b":"é"}',
        ),
        BookDelta(
            **EDGE,
            market="KX-E4",
            event_key="d:e4",
            ts_ms=BASE_MS - 2,
            recv_ns=(BASE_MS - 2) * 10**6,
            side="no",
            price=Decimal("0.0001"),
            delta=Decimal("-123456789.12"),
        ),
    ]


def _dlq(env: Any, expect: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(consumer_config(env.config.kafka, f"dlq-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([env.names.dlq])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error() is None:
                out.append(decode_dead_letter(msg.value()))
    consumer.close()
    return out


def _assert_exact(env: Any, events: list[Any]) -> None:
    """Every table holds exactly the expected rows, compared field by field."""
    got, want = env.tables(), env.expected(events)
    for table in want:
        assert got[table].keys() == want[table].keys(), table
        for key, row in want[table].items():
            assert got[table][key] == row, (table, key)


@pytest.mark.parametrize("timescaledb", ["off", "on"])
def test_every_event_type_lands_with_exact_values(
    make_sink_env: Callable[..., Any], mdpipe_config: Config, timescaledb: str
) -> None:
    if timescaledb == "on":
        with psycopg.connect(mdpipe_config.postgres.dsn) as conn:
            if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
                pytest.skip("TimescaleDB extension not installed on this PostgreSQL (plain tables covered by 'off')")
    env = make_sink_env(timescaledb=timescaledb)
    events = _edge_events() + make_events(3000, markets=40, seed=11)
    env.produce(events)
    stats = env.run_loader("g-exact", batch_rows=700)
    assert stats.rows == len(events) and stats.duplicates == 0 and stats.dead == 0
    _assert_exact(env, events)
    with psycopg.connect(env.dsn) as conn:
        offsets = dict(conn.execute("SELECT partition, next_offset FROM sink_offsets WHERE group_id = 'g-exact'"))
        loaded = conn.execute("SELECT count(*) FROM trades WHERE loaded_at < ts OR loaded_at > now()").fetchone()
    assert sum(offsets.values()) == len(events)  # next offsets of 6 partitions starting at 0
    assert loaded == (0,)


def test_new_group_reconsumes_and_adds_no_row(sink_env: Any) -> None:
    events = make_events(4000, markets=30, seed=12)
    sink_env.produce(events)
    first = sink_env.run_loader("g-first")
    assert first.rows == len(events)
    before = sink_env.tables()
    second = sink_env.run_loader("g-second")  # replays the whole topic
    assert second.rows == 0 and second.duplicates == len(events)
    assert sink_env.tables() == before
    third = sink_env.run_loader("g-first")  # same group: resumes at its stored offsets, reads nothing
    assert third.rows == 0 and third.duplicates == 0


def _delta(market: str, event_key: str, price: Decimal) -> BookDelta:
    """One order-book delta at the edge of the test data, for the dead-letter cases."""
    return BookDelta(
        **EDGE,
        market=market,
        event_key=event_key,
        ts_ms=BASE_MS,
        recv_ns=BASE_MS * 10**6,
        side="yes",
        price=price,
        delta=Decimal("1"),
    )


def test_rejected_and_undecodable_records_go_to_dlq(sink_env: Any) -> None:
    events = make_events(500, markets=10, seed=13)
    bad_text = _delta("KX-B", "d:bad\x00key", Decimal("0.5"))
    bad_json = Lifecycle(
        **EDGE,
        market="KX-B",
        event_key="l:badjson",
        ts_ms=BASE_MS,
        recv_ns=BASE_MS * 10**6,
        event_type="x",
        details="{not json",
    )
    mid = len(events) // 2
    sink_env.produce([*events[:mid], bad_text, *events[mid:], bad_json], raw=[(b"KX-B", b"\xc1garbage")])
    stats = sink_env.run_loader("g-dlq")
    assert stats.rows == len(events) and stats.dead == 3
    got, want = sink_env.tables(), sink_env.expected(events)
    assert {t: set(r) for t, r in got.items()} == {t: set(r) for t, r in want.items()}
    dead = _dlq(sink_env, 3)
    assert len(dead) == 3
    reasons = sorted(d.reason.split(":")[0] for d in dead)
    assert reasons == ["market_lifecycle", "orderbook_deltas", "undecodable event"]
    payloads = {d.payload for d in dead}
    assert encode_event(bad_text) in payloads and encode_event(bad_json) in payloads and b"\xc1garbage" in payloads
    assert all(d.stage == "sink" and d.source_topic == sink_env.names.events and d.source_offset >= 0 for d in dead)


def test_unencodable_only_row_of_a_table_goes_to_dlq_and_the_sink_goes_on(sink_env: Any) -> None:
    """The only delta has a NaN price: it is a dead letter, every other row lands, and the sink carries on
    (it used to COPY an empty stream for the table and loop forever in the rejected-row bisection)."""
    events = [e for e in make_events(600, markets=10, seed=16) if not isinstance(e, BookDelta)]
    nan = _delta("KX-N", "d:nan", Decimal("NaN"))
    sink_env.produce([*events[:300], nan, *events[300:]])
    loader, thread, out = sink_env.start_loader_thread("g-nan", exit_when_idle=True)
    thread.join(60)
    if thread.is_alive():
        loader.stop()
        thread.join(30)
        pytest.fail("the sink did not finish the batch holding the unencodable row")
    assert out and out[0].rows == len(events) and out[0].dead == 1
    got, want = sink_env.tables(), sink_env.expected(events)
    assert {t: set(r) for t, r in got.items()} == {t: set(r) for t, r in want.items()}
    dead = _dlq(sink_env, 1)
    assert [d.payload for d in dead] == [encode_event(nan)] and "NaN" in dead[0].reason
    later = make_events(200, markets=5, seed=17)
    sink_env.produce(later)
    assert sink_env.run_loader("g-nan").rows == len(later)  # the stored offsets moved past the bad row


def test_store_skips_an_empty_table_on_both_paths(sink_env: Any) -> None:
    """Defence in depth: a batch carrying an empty table commits on the fast path and on the slow path."""
    from sink.batch import Batch, Source
    from sink.store import Store

    events = [e for e in make_events(120, markets=5, seed=18) if not isinstance(e, Trade)]
    bad = BookDelta(**EDGE, market="KX-B", event_key="d:bad\x00", ts_ms=BASE_MS, recv_ns=1, side="yes",
                    price=Decimal("0.5"), delta=Decimal("1"))  # fmt: skip
    store = Store(sink_env.dsn, "g-empty")
    try:
        for n, evs in enumerate((events[:50], [*events[50:], bad])):  # fast path, then rejected row -> slow path
            batch = Batch()
            batch.add_many([Source("events", 0, 1000 * n + i, encode_event(e)) for i, e in enumerate(evs)])
            assert "trades" not in batch.rows
            batch.rows["trades"] = []
            result = store.write(batch, lambda dead: None)
            assert sum(result.rows.values()) == len(evs) - n and len(result.dead) == n
    finally:
        store.close()
    assert sum(sink_env.counts().values()) == len(events)


def test_markets_are_upserted_latest_first(sink_env: Any) -> None:
    refs = [
        MarketRef(
            venue=VENUE,
            ticker="KX-M1",
            event_ticker="KX",
            title="one",
            status="open",
            open_time_ms=BASE_MS,
            close_time_ms=BASE_MS + 3_600_000,
            price_level_structure="linear_cent",
            price_ranges='[{"start":"0.01","end":"0.99","step":"0.01"}]',
            updated_ns=NS + 10,
        ),
        MarketRef(venue=VENUE, ticker="KX-M2", title="two", status="open", updated_ns=NS + 10),
        MarketRef(
            venue=VENUE,
            ticker="KX-M1",
            event_ticker="KX",
            title="one",
            status="closed",
            open_time_ms=BASE_MS,
            close_time_ms=BASE_MS + 3_600_000,
            price_level_structure="linear_cent",
            price_ranges='[{"start":"0.01","end":"0.99","step":"0.01"}]',
            updated_ns=NS + 20,
        ),
    ]
    sink_env.produce_markets(refs)
    sink_env.produce(make_events(50, seed=14))
    stats = sink_env.run_loader("g-markets")
    assert stats.rows == 50 and stats.markets >= 2
    stale = MarketRef(venue=VENUE, ticker="KX-M1", title="stale", status="open", updated_ns=NS + 15)
    sink_env.produce_markets([stale])
    sink_env.run_loader("g-markets")
    with psycopg.connect(sink_env.dsn) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT ticker, status, title, open_time, close_time, price_level_structure, price_ranges,"
                " updated_ns FROM markets"
            )
        }
    assert set(rows) == {"KX-M1", "KX-M2"}
    status, title, open_time, close_time, structure, ranges, updated = rows["KX-M1"]
    assert (status, title, structure, updated) == ("closed", "one", "linear_cent", NS + 20)
    assert open_time.timestamp() * 1000 == BASE_MS and close_time.timestamp() * 1000 == BASE_MS + 3_600_000
    assert ranges == [{"start": "0.01", "end": "0.99", "step": "0.01"}]
    assert rows["KX-M2"][:2] == ("open", "two")


def test_replay_time_range_restores_deleted_rows_only(sink_env: Any) -> None:
    events = make_events(3000, markets=20, seed=15)
    sink_env.produce(events)
    sink_env.run_loader("g-live")
    full = sink_env.tables()
    lo, hi = events[1000].ts_ms, events[2000].ts_ms
    with psycopg.connect(sink_env.dsn) as conn:
        for table in full:
            conn.execute(
                f"DELETE FROM {table} WHERE ts >= to_timestamp(%s / 1000.0) AND ts < to_timestamp(%s / 1000.0)",
                (lo, hi),
            )
    assert sum(sink_env.counts().values()) == len(events) - 1000
    stats = sink_env.run_loader("g-replay", from_ms=lo, to_ms=hi)
    assert stats.rows == 1000 and stats.duplicates == 0
    assert sink_env.tables() == full


def test_two_sinks_split_partitions_and_load_everything_once(sink_env: Any) -> None:
    events = make_events(12_000, markets=200, seed=16)
    a, ta, out_a = sink_env.start_loader_thread("g-pair", batch_rows=500)
    b, tb, out_b = sink_env.start_loader_thread("g-pair", batch_rows=500)
    try:
        deadline = time.monotonic() + 60
        while not (a._assignment and b._assignment):  # both members hold partitions before data arrives
            assert time.monotonic() < deadline, "the two sinks did not share the partitions"
            time.sleep(0.1)
        parts_a = {tp.partition for tp in a._assignment if tp.topic == sink_env.names.events}
        parts_b = {tp.partition for tp in b._assignment if tp.topic == sink_env.names.events}
        assert parts_a and parts_b and not parts_a & parts_b and parts_a | parts_b == set(range(6))
        sink_env.produce(events)
        while sum(sink_env.counts().values()) < len(events):
            assert time.monotonic() < deadline + 60, "not everything was loaded"
            time.sleep(0.1)
    finally:
        a.stop()
        b.stop()
        ta.join(60)
        tb.join(60)
    assert out_a[0].rows > 0 and out_b[0].rows > 0, (out_a, out_b)
    assert out_a[0].rows + out_b[0].rows == len(events)
    assert out_a[0].duplicates == out_b[0].duplicates == 0
    got, want = sink_env.tables(), sink_env.expected(events)
    assert {t: set(r) for t, r in got.items()} == {t: set(r) for t, r in want.items()}
    with psycopg.connect(sink_env.dsn) as conn:
        parts = conn.execute("SELECT count(*), sum(next_offset) FROM sink_offsets WHERE group_id = 'g-pair'").fetchone()
    assert parts == (6, len(events))


def test_rebalance_mid_batch_commits_nothing_twice(sink_env: Any) -> None:
    events = make_events(8000, markets=100, seed=17)
    sink_env.produce(events)
    # A holds everything in one uncommitted batch (no size or time flush during the test: its lanes' commit slots are
    # set as if each had just committed two batches, its burst, so no batch falls due before batch_ms, 10 minutes)
    a = sink_env.loader("g-rebal", batch_rows=1_000_000, batch_ms=600_000)
    for lane in a.lanes:
        lane.slot = time.monotonic() + 2 * 600.0
    out_a: list[Any] = []
    ta = threading.Thread(target=lambda: out_a.append(a.run()), daemon=True)
    ta.start()
    b = tb = None
    out_b: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while a.pending < len(events):
            assert time.monotonic() < deadline, "A did not consume the topic"
            time.sleep(0.05)
        assert sum(sink_env.counts().values()) == 0
        b, tb, out_b = sink_env.start_loader_thread("g-rebal", batch_rows=500)  # joins: rebalance mid-batch
        while not (a._assignment and b._assignment):
            assert time.monotonic() < deadline, "no rebalance"
            time.sleep(0.05)
        while sum(sink_env.counts().values()) < len(events) - a.pending:
            assert time.monotonic() < deadline + 60, "B did not load its partitions"
            time.sleep(0.05)
    finally:
        a.stop()
        if b is not None:
            b.stop()
        ta.join(60)
        if tb is not None:
            tb.join(60)
    assert out_a[0].dropped >= len(events)  # the uncommitted batch was dropped on revoke, then re-read
    assert out_a[0].rows + out_b[0].rows == len(events)
    assert out_a[0].duplicates == out_b[0].duplicates == 0  # no row was written twice
    got, want = sink_env.tables(), sink_env.expected(events)
    assert {t: set(r) for t, r in got.items()} == {t: set(r) for t, r in want.items()}


@pytest.mark.parametrize("writers", [1, 4])
def test_writer_lanes_share_the_partitions_and_load_everything_once(sink_env: Any, writers: int) -> None:
    env = sink_env.with_config(sink=msgspec.structs.replace(sink_env.config.sink, writers=writers))
    events = make_events(6000, markets=60, seed=31)
    env.produce(events)
    loader = env.loader(f"g-lanes-{writers}", batch_rows=400, exit_when_idle=True)
    stats = loader.run()
    assert stats.rows == len(events) and stats.duplicates == 0 and stats.dead == 0
    assert len(loader.lanes) == writers
    assert all(lane.batches > 0 for lane in loader.lanes), [lane.batches for lane in loader.lanes]
    got, want = env.tables(), env.expected(events)
    assert {t: set(r) for t, r in got.items()} == {t: set(r) for t, r in want.items()}
    with psycopg.connect(env.dsn) as conn:
        offsets = conn.execute(
            "SELECT count(*), sum(next_offset) FROM sink_offsets WHERE group_id = %s", (f"g-lanes-{writers}",)
        ).fetchone()
    assert offsets == (6, len(events))


def test_pure_python_row_builder_lands_the_same_exact_values(sink_env: Any) -> None:
    # sink.row_codec = python: what runs where the C builder could not be compiled
    env = sink_env.with_config(sink=msgspec.structs.replace(sink_env.config.sink, row_codec="python"))
    events = _edge_events() + make_events(1500, markets=30, seed=32)
    env.produce(events)
    stats = env.run_loader("g-pure-python", batch_rows=500)
    assert stats.rows == len(events) and stats.duplicates == 0 and stats.dead == 0
    _assert_exact(env, events)
