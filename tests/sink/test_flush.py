"""When a batch goes to the writer: at batch_rows, or at batch_ms once the writer is free (adaptive size)."""

from __future__ import annotations

import pytest

from sink.flush import BUSY_POLL_S, flush_due, poll_timeout


def test_empty_batch_is_never_due() -> None:
    assert not flush_due(0, 10.0, 100, 0.05, writer_idle=True)


def test_full_batch_is_due_even_while_the_writer_is_busy() -> None:
    assert flush_due(100, 0.0, 100, 0.05, writer_idle=False)
    assert flush_due(150, 0.0, 100, 0.05, writer_idle=False)


def test_old_batch_goes_when_the_writer_is_free_and_grows_meanwhile() -> None:
    assert flush_due(10, 0.05, 100, 0.05, writer_idle=True)
    assert not flush_due(10, 0.05, 100, 0.05, writer_idle=False)  # keeps growing instead of waiting in line
    assert not flush_due(10, 0.049, 100, 0.05, writer_idle=True)  # not due yet


@pytest.mark.parametrize(
    ("size", "age", "expected"),
    [
        (0, 0.0, 0.25),  # empty: the longest wait (the loader's wait for a first record returns when it comes)
        (5, 0.01, 0.04),  # until due
        (5, 0.05, BUSY_POLL_S),  # due, waiting for the writer: short polls
        (5, 3.0, BUSY_POLL_S),
    ],
)
def test_poll_timeout(size: int, age: float, expected: float) -> None:
    assert poll_timeout(size, age, 0.05, 0.25) == pytest.approx(expected)


def test_poll_timeout_is_capped() -> None:
    assert poll_timeout(0, 0.0, 0.05, 0.25) == 0.25
    assert poll_timeout(3, 0.5, 2.0, 0.25) == 0.25


def test_lanes_merge_only_when_every_writer_is_idle_one_batch_is_due_by_time_and_none_by_size() -> None:
    from sink.flush import merge_due

    assert merge_due([10, 7], [0.05, 0.01], 100, 0.05, all_idle=True)
    assert merge_due([0, 7], [0.0, 0.06], 100, 0.05, all_idle=True)
    assert not merge_due([10, 7], [0.05, 0.01], 100, 0.05, all_idle=False)  # a writer busy: lanes go on their own
    assert not merge_due([100, 7], [0.05, 0.05], 100, 0.05, all_idle=True)  # a full batch: a backlog, in parallel
    assert not merge_due([10, 7], [0.04, 0.01], 100, 0.05, all_idle=True)  # nothing due yet
    assert not merge_due([0, 0], [0.0, 0.0], 100, 0.05, all_idle=True)
    assert not merge_due([10], [0.5], 100, 0.05, all_idle=True)  # one lane: nothing to merge


def test_a_batch_is_due_on_arrival_while_the_lane_commits_at_most_once_per_batch_ms_with_bursts_of_two() -> None:
    from sink.flush import next_commit_slot, opened_at

    m = 0.02
    assert opened_at(10.0, float("-inf"), m) + m == 10.0  # never committed: due on arrival
    slot = next_commit_slot(float("-inf"), 10.0, m)  # committed at 10.00
    assert opened_at(10.001, slot, m) + m == pytest.approx(10.001)  # a stray batch right after: due at once too
    slot = next_commit_slot(slot, 10.001, m)
    assert opened_at(10.005, slot, m) + m == pytest.approx(10.02)  # a third within 20 ms waits: two per 20 ms
    # arrivals every 21 ms with a stray batch after one of them: every arrival still goes at once (no chain)
    slot, t, waits = float("-inf"), 0.0, []
    for k in range(40):
        t = 0.021 * k
        due = opened_at(t, slot, m) + m
        waits.append(due - t)
        slot = next_commit_slot(slot, due, m)
        if k == 5:
            stray = opened_at(t + 0.001, slot, m) + m
            slot = next_commit_slot(slot, stray, m)
    assert max(waits) == pytest.approx(0.0, abs=1e-9), waits
    # arrivals every 5 ms: commits paced at one per 20 ms, none waiting more than batch_ms
    slot, dues = float("-inf"), []
    for k in range(200):
        t = 0.005 * k
        if dues and dues[-1] > t:
            continue  # the batch pending: these records join it
        due = opened_at(t, slot, m) + m
        assert due - t <= m + 1e-9
        dues.append(due)
        slot = next_commit_slot(slot, due, m)
    assert len(dues) <= 1.0 / m + 2


def test_full_batches_of_a_backlog_do_not_push_the_next_paced_batch_back() -> None:
    """A full batch goes at once, whatever the lane's rate; it must not bank waiting time for the batches after it
    (a drained backlog of full batches, one a millisecond, then a paced record: it waits at most batch_ms)."""
    from sink.flush import next_commit_slot, opened_at

    m, slot = 0.02, float("-inf")
    for k in range(1000):  # one full batch per ms for a second
        slot = next_commit_slot(slot, k * 0.001, m)
    arrived = 1.0
    assert opened_at(arrived, slot, m) + m - arrived <= m + 1e-9
