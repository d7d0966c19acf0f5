"""When a run counts as settled after start-up (:mod:`ops.settle`)."""

from __future__ import annotations

from ops.settle import Settle, SettleWatch, stage_lags


def test_settled_once_every_lag_stayed_low_for_the_hold_time() -> None:
    watch = SettleWatch(Settle(lag_s=1.0, hold_s=3.0, timeout_s=60.0))
    samples = [(1, [9.0, 0.0]), (2, [0.5, 0.2]), (3, [0.4, 1.5]), (4, [0.3, 0.1]), (5, [0.9, 0.0]), (6, None),
               (7, [0.2, 0.3]), (8, [0.1, 0.0]), (9, [0.2, 0.0]), (10, [0.0, 0.0])]  # fmt: skip
    seen = [(t, watch.observe(t, lags)) for t, lags in samples]
    # a lag above the bound (t=3) or a stage that did not answer (t=6) starts the stretch again
    assert [t for t, settled in seen if settled] == [10]
    assert watch.settled_at == 7
    assert watch.observe(11, [50.0]) is True  # settled stays settled
    assert not watch.timed_out(100.0)


def test_a_run_that_never_settles_times_out() -> None:
    watch = SettleWatch(Settle(lag_s=1.0, hold_s=3.0, timeout_s=20.0))
    assert not any(watch.observe(t, [5.0]) for t in range(20))
    assert not watch.timed_out(19.9) and watch.timed_out(20.0)
    assert watch.settled_at is None


def test_stage_lags_need_every_stage_to_answer() -> None:
    stages = {
        "dedup": {"dedup-1": {"lag_s": 0.4}},
        "sink": {"sink": {"lag_s": 2.5, "rows_total": 10.0}},
        "gatherers": {"g1": {}},
    }
    assert stage_lags(stages, expected=2) == [0.4, 2.5]
    sink_restarting = {"dedup": {"dedup-1": {"lag_s": 0.4}}, "sink": {}}
    assert stage_lags(sink_restarting, expected=2) is None


def test_no_steady_state_before_the_first_rows() -> None:
    """Every lag reads 0 while nothing has reached the stages yet (gatherers still subscribing): not steady."""
    before = {"dedup": {"dedup-1": {"lag_s": 0.0}}, "sink": {"sink": {"lag_s": 0.0, "rows_total": 0.0}}}
    assert stage_lags(before, expected=2) is None
    watch = SettleWatch(Settle(lag_s=1.0, hold_s=3.0, timeout_s=60.0))
    assert not any(watch.observe(t, stage_lags(before, expected=2)) for t in range(10))
