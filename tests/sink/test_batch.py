"""Batch: rows per table, next offsets per partition, time-range filter, dead letters, market last-wins."""

from __future__ import annotations

from collections import Counter

import msgspec

from bench.sink.data import make_events
from schemas import BookDelta, MarketRef, decode_event, encode_event, encode_market
from sink.batch import Batch, Source, dead_letter
from sink.records import MIRRORS
from sink.rows import COLUMNS, TABLE_BY_TYPE, copy_buffer, copy_sql, loaded_at_field
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)


def _sources(payloads: list[bytes], topic: str = "events") -> list[Source]:
    return [Source(topic, i % 3, 100 + i, p) for i, p in enumerate(payloads)]


def test_rows_offsets_and_tables() -> None:
    events = make_events(500, markets=20, seed=2)
    batch = Batch()
    batch.add_many(_sources([encode_event(e) for e in events]))
    expected = Counter(TABLE_BY_TYPE[MIRRORS[type(e).__name__]] for e in events)
    assert {t: len(r) for t, r in batch.rows.items()} == dict(expected)
    assert batch.size == 500 and batch.row_count == 500 and not batch.dead
    # next offset = last offset + 1 for each partition
    assert batch.offsets == {("events", 0): 100 + 498 + 1, ("events", 1): 100 + 499 + 1, ("events", 2): 100 + 497 + 1}
    # every row keeps its source message for dead-letter reporting
    for table, rows in batch.rows.items():
        sources = batch.sources_of(table)
        assert len(sources) == len(rows)
        for src, row in zip(sources, rows, strict=True):  # the original bytes, row by row
            key = decode_event(src.value()).event_key.encode()
            assert row[28 : 28 + len(key)] == key  # after ts, received_at (4 + 8 bytes each) and the length
    batch.clear()
    assert not batch.rows and not batch.offsets and batch.size == 0


def test_copy_buffer_framing() -> None:
    events = make_events(50, seed=4)
    batch = Batch()
    batch.add_many(_sources([encode_event(e) for e in events]))
    loaded = loaded_at_field(1_767_225_600_000_000_000)
    for table, rows in batch.rows.items():
        buf = copy_buffer(table, rows)
        assert buf.startswith(b"PGCOPY\n\xff\r\n\x00") and buf.endswith(b"\xff\xff")
        ncols = len(COLUMNS[table]).to_bytes(2, "big")
        assert buf == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"".join(ncols + r for r in rows) + b"\xff\xff"
        explicit = copy_buffer(table, rows, loaded)
        assert explicit.count((len(COLUMNS[table]) + 1).to_bytes(2, "big") + loaded) >= len(rows)
        assert copy_sql(table, with_loaded_at=True).startswith(f"COPY {table} (loaded_at, ts, ")
    assert copy_buffer("trades", []) == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"  # no field count


def test_time_range_filter() -> None:
    events = make_events(100, seed=6)
    lo, hi = events[20].ts_ms, events[70].ts_ms
    batch = Batch(from_ms=lo, to_ms=hi)
    batch.add_many(_sources([encode_event(e) for e in events]))
    assert batch.row_count == 50
    assert batch.skipped == 50
    assert batch.offsets[("events", 0)] == 100 + 99 + 1  # filtered records still advance the offsets


def test_undecodable_and_unencodable_become_dead_letters() -> None:
    delta = next(e for e in make_events(50, seed=8) if isinstance(e, BookDelta))
    good = encode_event(delta)
    raw = msgspec.msgpack.decode(good)
    assert raw[-6] == str(delta.delta)  # array-like layout: `delta`, the two hop stamps, the book rule (two fields),
    raw[-6] = "not-a-number"  # the alias flag
    bad_number = msgspec.msgpack.encode(raw)
    batch = Batch()
    batch.add_many(_sources([b"\x00garbage", good, bad_number]))
    assert batch.row_count == 1
    assert [d.reason.split(":")[0] for d in batch.dead] == ["undecodable event", "undecodable event"]
    assert "not-a-number" in batch.dead[1].reason
    first = batch.dead[0]
    assert (first.payload, first.source_topic, first.source_partition, first.source_offset) == (
        b"\x00garbage",
        "events",
        0,
        100,
    )
    assert batch.offsets == {("events", 0): 101, ("events", 1): 102, ("events", 2): 103}


def test_markets_last_update_wins_and_tombstones_ignored() -> None:
    old = MarketRef(venue=VENUE, ticker="KX-A", title="old", updated_ns=2)
    new = MarketRef(venue=VENUE, ticker="KX-A", title="new", updated_ns=5)
    stale = MarketRef(venue=VENUE, ticker="KX-A", title="stale", updated_ns=1)
    batch = Batch()
    batch.add_many(_sources([encode_market(m) for m in (old, new, stale)] + [b""], topic="markets"))
    assert list(batch.markets) == [(VENUE, "KX-A")]
    assert batch.markets[(VENUE, "KX-A")][0].title == "new"
    assert batch.row_count == 0 and not batch.dead
    assert batch.offsets[("markets", 0)] == 104


def test_dead_letter_fields() -> None:
    d = dead_letter("why", Source("events", 4, 77, b"xy"))
    assert (d.stage, d.reason, d.payload, d.source_topic, d.source_partition, d.source_offset) == (
        "sink",
        "why",
        b"xy",
        "events",
        4,
        77,
    )
    assert d.at_ns > 0


def test_offsets_from_runs_of_partitions() -> None:
    """consume() hands out runs of one partition; a partition can come back in a later run of the same chunk."""
    payloads = [encode_event(e) for e in make_events(9, seed=9)]
    parts = [0, 0, 0, 1, 1, 0, 0, 2, 1]
    offsets = [10, 11, 12, 50, 51, 13, 14, 7, 52]
    batch = Batch()
    batch.add_many([Source("events", p, o, v) for p, o, v in zip(parts, offsets, payloads, strict=True)])
    assert batch.offsets == {("events", 0): 15, ("events", 1): 53, ("events", 2): 8}
    batch.add_many([Source("markets", 0, 3, b""), Source("events", 0, 15, payloads[0])])
    assert batch.offsets == {("events", 0): 16, ("events", 1): 53, ("events", 2): 8, ("markets", 0): 4}


def test_absorbed_lane_batch_commits_with_ours_rows_in_message_order_per_table() -> None:
    from bench.sink.data import make_events
    from schemas import encode_event
    from sink.batch import Batch, Source

    events = make_events(400, markets=20, seed=44)
    ours, theirs = (
        Batch("events", "markets", stamps=bytearray(), runs=[]),
        Batch("events", "markets", stamps=bytearray(), runs=[]),
    )
    ours.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events[:200])], 1, opened=5.0)
    theirs.add_many([Source("events", 1, i, encode_event(e)) for i, e in enumerate(events[200:])], 2, opened=4.0)
    want_rows = {t: list(ours.rows.get(t, [])) + list(theirs.rows.get(t, [])) for t in {*ours.rows, *theirs.rows}}
    ours.absorb(theirs)
    assert ours.rows == want_rows
    assert ours.offsets == {("events", 0): 200, ("events", 1): 200}
    assert ours.size == 400 and ours.started == 4.0
    assert len(ours.stamps or b"") == 8 * 400 and len(ours.runs or []) == 2
    for table, rows in ours.rows.items():  # the slow path re-derives each row's message from event_msgs
        assert len(ours.sources_of(table)) == len(rows)


def _deeply_nested(record: bytes) -> bytes:
    """``record`` (a msgpack array) with one more element nested 2,000 arrays deep: msgspec skips an extra trailing
    element recursively and raises RecursionError past its limit (~1,000 levels)."""
    head = msgspec.msgpack.encode([*msgspec.msgpack.decode(record), None])[:-1]  # the header counting one more
    return head + b"\x91" * 2000 + b"\xc0"


def test_records_nested_too_deep_become_dead_letters() -> None:
    """A RecursionError left the decoders uncaught: the sink stopped on the record and, restarted, read it again."""
    delta = next(e for e in make_events(50, seed=8) if isinstance(e, BookDelta))
    good = encode_event(delta)
    deep_event = _deeply_nested(good)
    deep_market = _deeply_nested(encode_market(MarketRef(venue=VENUE, ticker="KXA-1", title="T", status="active")))
    batch = Batch()
    batch.add_many([*_sources([deep_event, good]), Source("markets", 0, 7, deep_market)])
    assert batch.row_count == 1
    assert sorted((d.source_topic, d.reason.split(":")[0]) for d in batch.dead) == [
        ("events", "undecodable event"),
        ("markets", "undecodable market"),
    ]
