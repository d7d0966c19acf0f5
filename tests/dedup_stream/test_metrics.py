"""The dedup collector exports the worker's counters under the documented names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from dedup_stream.logic import Deduper, MemoryStore, Origin
from dedup_stream.metrics import METRIC_NAMES, DedupCollector, summary
from schemas import RawFrame, encode_raw
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)


def frame(gatherer: str, key: str, recv_ns: int) -> bytes:
    return encode_raw(
        RawFrame(venue=VENUE, gatherer=gatherer, conn=1, sid=1, seq=1, recv_ns=recv_ns, kind="trade",
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


def test_gap_windows_are_exported_by_gatherer_and_kind() -> None:
    d = Deduper(MemoryStore())
    payloads = [
        b'{"kind": "down", "conn": 1, "from_ns": 1, "to_ns": 5, "markets": ["*"]}',
        b'{"kind": "down", "conn": 2, "from_ns": 1, "to_ns": 5, "markets": ["*"]}',
        b'{"sid": 1, "expected": 3, "received": 5}',
    ]
    for i, payload in enumerate(payloads):
        gap = RawFrame(venue=VENUE, gatherer="g2", conn=1, sid=1, seq=None, recv_ns=10, kind="gap", market="M",
                       event_key="", payload=payload)  # fmt: skip
        assert d.decide(encode_raw(gap), Origin("raw.g2", 0, i)).emit
    registry = CollectorRegistry()
    registry.register(DedupCollector(d.stats, dict, lambda: 0))
    text = generate_latest(registry).decode()
    assert 'mdpipe_dedup_gap_windows_total{gatherer="g2",kind="down"} 2.0' in text
    assert 'mdpipe_dedup_gap_windows_total{gatherer="g2",kind="seq"} 1.0' in text
    assert 'mdpipe_dedup_gap_reports_total{gatherer="g2"} 3.0' in text
    assert 'mdpipe_dedup_gap_messages_total{gatherer="g2"} 2.0' in text
    assert summary(d.stats)["gatherers"]["g2"]["gap_kinds"] == {"down": 2, "seq": 1}
