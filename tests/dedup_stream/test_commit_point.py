"""The bookkeeping of the native worker's interval commit point (:mod:`dedup_stream.commit_point`)."""

from __future__ import annotations

from dedup_stream.commit_point import CommitPoint, merge_back


def test_a_point_admits_the_batches_before_it_then_waits_for_every_acknowledgement() -> None:
    point = CommitPoint({("raw", 0): 41}, {0: 3}, held_before=2)
    assert point.admits_events() and not point.ready(True, 0)
    point.released()
    assert point.admits_events()
    point.released()
    assert not point.admits_events()
    point.released()  # a batch after the point (released once the point is committed): never below zero
    assert point.held_before == 0
    assert not point.ready(False, 0)  # a changelog record before the point not acknowledged
    assert not point.ready(True, 1)  # an event not acknowledged
    assert point.ready(True, 0)


def test_a_failed_commit_is_merged_back_unless_superseded() -> None:
    positions = {("raw", 1): 90}  # partition 1 moved on since: its newer position goes with the next commit
    issued = {("raw", 0): 10, ("raw", 1): 50, ("raw", 2): 70}  # partition 2: a newer commit (70) went out
    failed = {("raw", 0): 10, ("raw", 1): 50, ("raw", 2): 60}
    assert merge_back(positions, failed, issued) == [("raw", 0)]
    assert positions == {("raw", 0): 10, ("raw", 1): 90}
