"""Pure rebalance decisions of the native worker: co-partitioning check, restore ranges, idle detection."""

from __future__ import annotations

import pytest

from dedup_stream.rebalance import CoPartitionError, RestorePlan, caught_up, copartitioned, restore_plan

RAW = ["raw.g1", "raw.g2", "raw.g3"]


def test_copartitioned_returns_the_shared_partitions() -> None:
    assignment = [(t, p) for p in (4, 1) for t in RAW]
    assert copartitioned(assignment, RAW) == [1, 4]
    assert copartitioned([], RAW) == []


def test_copartitioned_refuses_a_split_partition() -> None:
    assignment = [("raw.g1", 0), ("raw.g2", 0), ("raw.g3", 1)]
    with pytest.raises(CoPartitionError, match=r"raw.g3=\[1\]"):
        copartitioned(assignment, RAW)
    with pytest.raises(CoPartitionError, match="not co-partitioned"):
        copartitioned([("raw.g1", 0), ("raw.g2", 0)], RAW)  # raw.g3 got nothing
    with pytest.raises(CoPartitionError, match="not a raw topic"):
        copartitioned([(t, 0) for t in RAW] + [("events", 0)], RAW)


def test_restore_plan() -> None:
    assert restore_plan(None, 0, 0) == RestorePlan(0, 0) and restore_plan(None, 0, 0).empty
    assert restore_plan(None, 5, 90) == RestorePlan(5, 90)  # fresh DB: everything retention kept
    assert restore_plan(41, 0, 90) == RestorePlan(42, 90)  # only the tail
    assert restore_plan(89, 0, 90).empty  # already complete
    assert restore_plan(10, 50, 90) == RestorePlan(50, 90)  # retention removed 11..49 (older than the window)
    assert restore_plan(90, 0, 90) == RestorePlan(0, 90, wipe=True)  # changelog behind local state: recreated
    assert restore_plan(7, 0, 0) == RestorePlan(0, 0, wipe=True)


def test_caught_up_uses_position_then_committed_then_low() -> None:
    assert caught_up(100, -1, 0, 100)
    assert not caught_up(99, 100, 0, 100)  # the position wins over the committed offset
    assert caught_up(-1001, 100, 0, 100)  # nothing read since the assignment, committed at the end
    assert not caught_up(-1001, 50, 0, 100)
    assert caught_up(-1001, -1001, 0, 0)  # empty partition
    assert not caught_up(-1001, -1001, 3, 9)
