"""The venue -> database latency histogram (sink.latency): each row's origin as the row builders stamp it (C and
Python alike), the bucket counts, the exported histogram, and the loader observing every committed row."""

from __future__ import annotations

import time
from array import array
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from bench.sink.data import make_events
from schemas import encode_event
from schemas.events import BookDelta, Ticker, Trade
from sink import latency, rowcodec
from sink.batch import Batch, Source, build_rows

fast = rowcodec.fast_build()
RECV_AFTER_MS = 7_000  # receive times 7 s after the venue times: tells which one a row was stamped with


def _events(n: int, seed: int, start_ms: int = 1_767_225_600_000) -> list[Any]:
    return [
        msgspec.structs.replace(e, recv_ns=(e.ts_ms + RECV_AFTER_MS) * 1_000_000 + 123)
        for e in make_events(n, markets=40, seed=seed, start_ms=start_ms)
    ]


def _expected_origin(ev: Any) -> int:
    return ev.ts_ms if isinstance(ev, BookDelta | Trade | Ticker) else ev.recv_ns // 1_000_000


@pytest.mark.parametrize("codec", ["c", "python"])
def test_each_row_is_stamped_with_its_venue_time_or_receive_time(codec: str) -> None:
    if codec == "c" and fast is None:
        pytest.skip("sink._rowcodec was not built")
    events = _events(3000, seed=5)
    payloads = [encode_event(e) for e in events]
    stamps = bytearray()
    rows: dict[str, list[bytes]] = {}
    dead, skipped = build_rows(payloads, None, None, rows, fast=fast if codec == "c" else None, stamps=stamps)
    assert not dead and not skipped
    got = array("q", bytes(stamps)).tolist()
    assert len(got) == sum(len(r) for r in rows.values()) == len(events)
    assert sorted(got) == sorted(_expected_origin(e) for e in events)
    assert any(_expected_origin(e) != e.ts_ms for e in events)  # both kinds of origin are in the mix


def test_c_and_python_paths_stamp_the_same_rows_in_the_same_order_with_a_time_range() -> None:
    if fast is None:
        pytest.skip("sink._rowcodec was not built")
    events = _events(2000, seed=6)
    payloads = [encode_event(e) for e in events]
    lo, hi = events[300].ts_ms, events[1700].ts_ms
    out = []
    for builder in (fast, None):
        stamps = bytearray()
        build_rows(payloads, lo, hi, {}, fast=builder, stamps=stamps)
        out.append(bytes(stamps))
    assert out[0] == out[1]
    assert len(out[0]) // 8 == sum(1 for e in events if lo <= e.ts_ms < hi)


def test_batch_collects_stamps_and_clears_them() -> None:
    events = _events(500, seed=7)
    batch = Batch("events", "markets", stamps=bytearray())
    batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events)])
    assert len(batch.stamps or b"") == 8 * len(events)
    batch.clear()
    assert batch.stamps == bytearray()
    assert Batch("events", "markets").stamps is None  # off unless asked for (replays)


def _python_ages(stamps: bytes, now_ms: int) -> tuple[list[int], int]:
    counts = [0] * (len(latency.BOUNDS_MS) + 1)
    total = 0
    for origin in array("q", stamps):
        age = max(0, now_ms - origin)
        total += age
        counts[next((i for i, b in enumerate(latency.BOUNDS_MS) if age <= b), len(latency.BOUNDS_MS))] += 1
    return counts, total


@given(st.lists(st.integers(min_value=-5_000, max_value=120_000), max_size=300))
def test_bucket_ages_counts_each_age_in_the_first_bucket_that_holds_it(ages: list[int]) -> None:
    now_ms = 1_800_000_000_000
    stamps = array("q", [now_ms - a for a in ages]).tobytes()
    assert latency.bucket_ages(stamps, now_ms) == _python_ages(stamps, now_ms)


def test_histogram_exports_cumulative_buckets_sum_and_count() -> None:
    hist = latency.LatencyHistogram("test_venue_to_db_seconds", "test")
    registry = CollectorRegistry()
    registry.register(hist)
    now_ns = 1_800_000_000_000 * 1_000_000
    now_ms = now_ns // 1_000_000
    hist.observe_batch(array("q", [now_ms - 40, now_ms - 100, now_ms - 2_500, now_ms + 5]).tobytes(), now_ns)
    hist.observe_batch(array("q", [now_ms - 90_000]).tobytes(), now_ns)
    text = generate_latest(registry).decode()
    assert 'test_venue_to_db_seconds_bucket{le="0.025"} 1.0' in text  # the future origin counts as 0
    assert 'test_venue_to_db_seconds_bucket{le="0.05"} 2.0' in text
    assert 'test_venue_to_db_seconds_bucket{le="0.1"} 3.0' in text
    assert 'test_venue_to_db_seconds_bucket{le="3.0"} 4.0' in text
    assert 'test_venue_to_db_seconds_bucket{le="60.0"} 4.0' in text
    assert 'test_venue_to_db_seconds_bucket{le="+Inf"} 5.0' in text
    assert "test_venue_to_db_seconds_count 5.0" in text
    assert "test_venue_to_db_seconds_sum 92.64" in text


@pytest.mark.integration
def test_loader_observes_every_committed_row_from_its_origin_to_the_commit(sink_env: Any) -> None:
    from sink import metrics

    age_s = 4.0  # every event's origin this long before the test starts: buckets up to 3 s stay empty
    events = _events(4000, seed=8, start_ms=int(time.time() * 1000 - age_s * 1000 - RECV_AFTER_MS - 4000))
    for i, ev in enumerate(events):  # venue and receive times alike: `age_s` (+ the run) before the commit
        events[i] = msgspec.structs.replace(ev, ts_ms=int(time.time() * 1000 - age_s * 1000))
        events[i] = msgspec.structs.replace(events[i], recv_ns=events[i].ts_ms * 1_000_000)
    before, before_sum = metrics.VENUE_TO_DB.snapshot()
    started = time.monotonic()
    sink_env.produce(events)
    stats = sink_env.run_loader("g-latency", batch_rows=1000)
    elapsed = time.monotonic() - started
    after, after_sum = metrics.VENUE_TO_DB.snapshot()
    assert stats.rows == len(events)
    counts = {le: n - dict(before)[le] for le, n in after}
    assert counts["+Inf"] == len(events)
    assert counts["3.0"] == 0
    mean = (after_sum - before_sum) / len(events)
    assert age_s <= mean <= age_s + elapsed + 1.0


@pytest.mark.integration
def test_a_replay_observes_nothing(sink_env: Any) -> None:
    from sink import metrics

    events = _events(500, seed=9)
    sink_env.produce(events)
    before, _ = metrics.VENUE_TO_DB.snapshot()
    stats = sink_env.run_loader("g-latency-replay", from_ms=events[0].ts_ms, to_ms=events[-1].ts_ms + 1)
    after, _ = metrics.VENUE_TO_DB.snapshot()
    assert stats.rows == len(events)
    assert after == before
