"""Writer lanes: how the loader splits assigned partitions between its database connections (no I/O)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from sink.batch import Batch, Source
from sink.loader import Loader, lanes_for


def _lanes(n: int) -> list[Any]:
    return [SimpleNamespace(index=i, batch=Batch(), slot=float("-inf")) for i in range(n)]


def test_each_topic_spreads_round_robin_over_the_lanes() -> None:
    lanes = _lanes(4)
    parts = [TopicPartition("events", p) for p in (5, 0, 3, 1, 4, 2)] + [TopicPartition("markets", p) for p in (0, 1)]
    got = lanes_for(parts, lanes)  # type: ignore[arg-type]
    assert {k: v.index for k, v in got.items()} == {
        ("events", 0): 0, ("events", 1): 1, ("events", 2): 2, ("events", 3): 3, ("events", 4): 0, ("events", 5): 1,
        ("markets", 0): 0, ("markets", 1): 1,
    }  # fmt: skip
    # a member holding only partitions 3..5 (range assignor, two members) still uses three lanes
    half = lanes_for([TopicPartition("events", p) for p in (3, 4, 5)], lanes)  # type: ignore[arg-type]
    assert sorted(Counter(v.index for v in half.values()).values()) == [1, 1, 1]


def test_route_keeps_each_partition_in_order_in_its_lane() -> None:
    lanes = _lanes(2)
    parts = [TopicPartition("events", p) for p in range(4)]
    config = SimpleNamespace(sink=SimpleNamespace(batch_ms=20))
    loader = SimpleNamespace(lanes=lanes, _lane_of=lanes_for(parts, lanes), config=config)  # type: ignore[arg-type]
    # consume() returns runs of one partition; several runs of the same partition may follow each other
    msgs = [Source("events", p, off, b"") for p, offs in ((0, (1, 2)), (1, (7,)), (2, (3,)), (0, (3,)), (3, (9, 10)))
            for off in offs]  # fmt: skip
    Loader._route(loader, msgs)  # type: ignore[arg-type]
    by_lane = {lane.index: lane.batch for lane in lanes}
    assert by_lane[0].offsets == {("events", 0): 4, ("events", 2): 4}
    assert by_lane[1].offsets == {("events", 1): 8, ("events", 3): 11}
    assert [m.offset() for m in by_lane[0].event_msgs] == [1, 2, 3, 3]  # p0: 1, 2; p2: 3; p0: 3
    assert by_lane[0].size == 4 and by_lane[1].size == 3
