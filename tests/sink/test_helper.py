"""The row helper process: same rows as building in-process, and a dead helper only means building locally."""

from __future__ import annotations

from decimal import Decimal

from bench.sink.data import make_events
from schemas import BookDelta, encode_event
from sink.batch import Batch, Source, build_rows
from sink.helper import RowHelper
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)


def _sources(payloads: list[bytes]) -> list[Source]:
    return [Source("events", i % 3, 10 + i, p) for i, p in enumerate(payloads)]


def test_helper_builds_the_same_rows_in_the_same_order() -> None:
    payloads = [encode_event(e) for e in make_events(3000, markets=50, seed=5)]
    payloads[2500] = b"\x01junk"  # in the helper's share: a dead letter pointing at its message
    local = Batch()
    local.add_many(_sources(payloads))
    helper = RowHelper(share=0.5, min_records=100)
    try:
        shared = Batch(helper=helper)
        shared.add_many(_sources(payloads))
        assert helper.alive and helper.cpu_s > 0
    finally:
        helper.close()
    assert shared.rows == local.rows
    assert shared.offsets == local.offsets and shared.size == local.size == 3000
    assert [(d.source_offset, d.reason) for d in shared.dead] == [(d.source_offset, d.reason) for d in local.dead]
    assert [d.source_offset for d in shared.dead] == [10 + 2500]
    for table, rows in shared.rows.items():
        assert [s.offset() for s in shared.sources_of(table)] == [s.offset() for s in local.sources_of(table)]
        assert len(rows) == len(shared.sources_of(table))


def test_time_filter_applies_in_the_helper() -> None:
    events = make_events(2000, seed=6)
    lo, hi = events[100].ts_ms, events[1900].ts_ms
    helper = RowHelper(share=0.5, min_records=100)
    try:
        batch = Batch(from_ms=lo, to_ms=hi, helper=helper)
        batch.add_many(_sources([encode_event(e) for e in events]))
    finally:
        helper.close()
    assert batch.row_count == 1800 and batch.skipped == 200


def test_a_dead_helper_falls_back_to_building_here() -> None:
    payloads = [encode_event(e) for e in make_events(1000, seed=7)]
    helper = RowHelper(share=0.5, min_records=100)
    assert helper._proc is not None
    helper._proc.kill()
    helper._proc.wait(5)
    batch = Batch(helper=helper)
    batch.add_many(_sources(payloads))
    assert batch.row_count == 1000 and not batch.dead
    assert not helper.alive
    batch.add_many(_sources(payloads))  # and keeps working without it
    assert batch.row_count == 2000
    helper.close()


def test_build_rows_reports_dead_and_skipped_by_index() -> None:
    payloads = [encode_event(e) for e in make_events(10, seed=8)]
    payloads[3] = b""
    rows: dict[str, list[bytes]] = {}
    dead, skipped = build_rows(payloads, None, None, rows)
    assert [i for i, _ in dead] == [3] and skipped == 0
    assert sum(len(r) for r in rows.values()) == 9


def test_an_unencodable_only_row_of_a_table_leaves_no_empty_table() -> None:
    """The only delta of the chunk has a NaN price: neither the helper's nor the local share may hand the
    store an empty table (an empty COPY stream, which PostgreSQL rejects)."""
    events = [e for e in make_events(400, markets=20, seed=8) if not isinstance(e, BookDelta)]
    nan = BookDelta(
        venue=VENUE, gatherer="g1", market="KX-N", event_key="d:nan", ts_ms=events[0].ts_ms, recv_ns=1,
        side="yes", price=Decimal("NaN"), delta=Decimal("1"),
    )  # fmt: skip
    for at in (len(events), 0):  # in the helper's tail, then in the local head
        payloads = [encode_event(e) for e in events]
        payloads.insert(at, encode_event(nan))
        helper = RowHelper(share=0.5, min_records=10)
        try:
            batch = Batch(helper=helper)
            batch.add_many(_sources(payloads))
            assert helper.alive
        finally:
            helper.close()
        assert "orderbook_deltas" not in batch.rows and all(batch.rows.values())
        assert batch.row_count == len(events)
        assert [d.source_offset for d in batch.dead] == [10 + at] and "NaN" in batch.dead[0].reason
