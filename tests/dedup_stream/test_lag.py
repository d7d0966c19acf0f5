"""Dedup consumer lag from librdkafka statistics: per owned partition only, records and seconds."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from dedup_stream.lag import PartitionOffsets, RawLag, parse_statistics
from dedup_stream.logic import Deduper, MemoryStore
from dedup_stream.metrics import DedupCollector


def stats(parts: dict[tuple[str, int], dict[str, int]]) -> str:
    """A librdkafka statistics document (the fields RawLag reads, plus the internal partition -1)."""
    topics: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for (topic, partition), fields in parts.items():
        entry = topics.setdefault(topic, {"partitions": {"-1": {"hi_offset": -1001, "ls_offset": -1001}}})
        base = {"hi_offset": -1001, "ls_offset": -1001, "lo_offset": -1001, "committed_offset": -1001}
        entry["partitions"][str(partition)] = {**base, "app_offset": -1001, **fields}
    return json.dumps({"name": "rdkafka#consumer-1", "topics": topics})


def test_parse_statistics_reads_watermarks_commits_and_positions_of_the_raw_topics_only() -> None:
    doc = stats(
        {
            ("raw.g1", 0): {
                "hi_offset": 100,
                "ls_offset": 90,
                "committed_offset": 40,
                "lo_offset": 0,
                "app_offset": 80,
            },
            ("raw.g2", 1): {"hi_offset": 7, "lo_offset": 2},  # nothing committed, no stable offset reported
            ("raw.g3", 2): {},  # not fetched yet: no watermark, skipped
            ("other", 0): {"hi_offset": 5},
        }
    )
    found = parse_statistics(doc, ["raw.g1", "raw.g2", "raw.g3"])
    assert found == {
        ("raw.g1", 0): PartitionOffsets(high=90, committed=40, low=0, position=80),  # read_committed: stable offset
        ("raw.g2", 1): PartitionOffsets(high=7, committed=-1001, low=2, position=-1001),
    }
    assert found[("raw.g1", 0)].lag_records == 50 and found[("raw.g1", 0)].waiting
    assert found[("raw.g2", 1)].lag_records == 5 and found[("raw.g2", 1)].waiting
    assert parse_statistics("not json", ["raw.g1"]) == {}


def test_waiting_follows_the_position_not_the_commit() -> None:
    consumed_not_committed = PartitionOffsets(high=90, committed=40, low=0, position=90)
    assert consumed_not_committed.lag_records == 50 and not consumed_not_committed.waiting
    assert PartitionOffsets(high=10, committed=10, low=0, position=-1001).waiting is False


@given(
    low=st.integers(0, 1000),
    extra=st.integers(0, 1000),
    committed=st.one_of(st.just(-1001), st.integers(0, 3000)),
)
def test_lag_records_is_never_negative_nor_more_than_the_topic_holds(low: int, extra: int, committed: int) -> None:
    offsets = PartitionOffsets(high=low + extra, committed=committed, low=low, position=-1001)
    assert 0 <= offsets.lag_records <= low + extra


def test_snapshot_reports_only_the_partitions_owned_now() -> None:
    lag = RawLag(["raw.g1", "raw.g2"])
    lag.assigned(now_ms=1_000_000)
    lag.update(
        stats(
            {
                ("raw.g1", 0): {"hi_offset": 50, "committed_offset": 10, "app_offset": 30},
                ("raw.g2", 0): {"hi_offset": 60, "committed_offset": 60, "app_offset": 60},
                ("raw.g1", 1): {"hi_offset": 70, "committed_offset": 0, "app_offset": 5},
            }
        )
    )
    lag.consumed(timestamp_ms=995_000)
    records, seconds = lag.snapshot(owned={0}, now_ms=1_002_000)
    assert records == {("raw.g1", 0): 40, ("raw.g2", 0): 0}  # partition 1 was revoked: no series
    assert seconds == 7.0  # frames wait behind the position: age of the last frame consumed
    assert lag.snapshot(owned=set(), now_ms=1_002_000) == ({}, 0.0)


def test_seconds_are_zero_when_caught_up_and_grow_from_the_assignment_before_the_first_frame() -> None:
    lag = RawLag(["raw.g1"])
    lag.assigned(now_ms=1_000_000)
    lag.update(stats({("raw.g1", 0): {"hi_offset": 50, "committed_offset": 10, "app_offset": 50}}))
    assert lag.snapshot({0}, now_ms=1_060_000) == ({("raw.g1", 0): 40}, 0.0)  # read all; commit pending
    lag.assigned(now_ms=2_000_000)  # a rebalance: old offsets forgotten, the clock restarts
    assert lag.snapshot({0}, now_ms=2_000_500) == ({}, 0.0)
    lag.update(stats({("raw.g1", 0): {"hi_offset": 80, "committed_offset": 50}}))  # stuck before any frame
    assert lag.snapshot({0}, now_ms=2_030_000) == ({("raw.g1", 0): 30}, 30.0)


def test_collector_exports_the_lag_of_owned_partitions_and_drops_revoked_ones() -> None:
    lag = RawLag(["raw.g1"])
    lag.assigned(now_ms=1_000)
    lag.update(
        stats(
            {
                ("raw.g1", 0): {"hi_offset": 50, "committed_offset": 10},
                ("raw.g1", 1): {"hi_offset": 9, "committed_offset": 0},
            }
        )
    )
    owned = {0, 1}
    d = Deduper(MemoryStore())
    registry = CollectorRegistry()
    registry.register(DedupCollector(d.stats, dict, lambda: 0, lambda: lag.snapshot(owned, 3_000)))
    text = generate_latest(registry).decode()
    assert 'mdpipe_dedup_consumer_lag_records{partition="0",topic="raw.g1"} 40.0' in text
    assert 'mdpipe_dedup_consumer_lag_records{partition="1",topic="raw.g1"} 9.0' in text
    assert "mdpipe_dedup_consumer_lag_seconds 2.0" in text
    owned.discard(1)  # revoked
    text = generate_latest(registry).decode()
    assert 'partition="1"' not in text and 'partition="0"' in text


def test_the_faust_engine_exports_no_lag_series_rather_than_zeros() -> None:
    registry = CollectorRegistry()
    registry.register(DedupCollector(Deduper(MemoryStore()).stats, dict, lambda: 0))
    samples = [s for m in registry.collect() for s in m.samples if "consumer_lag" in s.name]
    assert samples == []
