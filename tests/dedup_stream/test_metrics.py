"""The dedup collector exports the worker's counters under the documented names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from dedup_stream.logic import Deduper, MemoryStore, Origin
from dedup_stream.metrics import METRIC_NAMES, DedupCollector, summary
from schemas import RawFrame, encode_raw


def frame(gatherer: str, key: str, recv_ns: int) -> bytes:
    return encode_raw(
        RawFrame(venue="kalshi", gatherer=gatherer, conn=1, sid=1, seq=1, recv_ns=recv_ns, kind="trade",
                 market="M", event_key=key, payload=b"{}")
    )  # fmt: skip


def test_collector_exports_per_gatherer_counters_and_gauges() -> None:
    d = Deduper(MemoryStore())
    d.decide(frame("g1", "a", 1_000_000_000), Origin("raw.g1", 0, 0))
    d.decide(frame("g2", "a", 3_000_000_000), Origin("raw.g2", 0, 0))
    d.decide(b"junk", Origin("raw.g2", 0, 1))
    registry = CollectorRegistry()
    extra = {"mdpipe_dedup_window_seconds": 3600.0, "mdpipe_dedup_events_out": 1, "mdpipe_dedup_match_age_seconds": 2.0}
    registry.register(DedupCollector(d.stats, lambda: extra, lambda: d.singles.pending))
    text = generate_latest(registry).decode()
    assert 'mdpipe_dedup_frames_in_total{gatherer="g1"} 1.0' in text
    assert 'mdpipe_dedup_frames_won_total{gatherer="g1"} 1.0' in text
    assert 'mdpipe_dedup_frames_duplicate_total{gatherer="g2"} 1.0' in text
    assert 'mdpipe_dedup_copy_lag_seconds{gatherer="g2"} 2.0' in text
    assert 'mdpipe_dedup_sync_lag_seconds{gatherer="g1"} 2.0' in text
    assert "mdpipe_dedup_invalid_frames_total 1.0" in text
    assert "mdpipe_dedup_window_seconds 3600.0" in text
    assert "mdpipe_dedup_events_out_total 1.0" in text
    for name in METRIC_NAMES:
        assert name in text
    assert summary(d.stats)["gatherers"]["g2"]["duplicates"] == 1
