"""Faults that blind a gatherer never overlap on one venue (ops.fault_spacing), also when a slow progress tick makes
several come due at once (a dropped message and the SIGKILL of the other gatherer lost one message of a venue
without sequence numbers on both gatherers of an all-venues run on a loaded machine)."""

from __future__ import annotations

from typing import Any

import pytest

from mdpipe.config import Config
from ops import pipeline_run
from ops.fault_spacing import FaultSpacing
from ops.pipeline_run import FaultPlan, PipelineRun, RunOptions


def test_spacing_per_venue_and_while_a_gatherer_is_down() -> None:
    s = FaultSpacing(spacing_s=2.0)
    assert s.may_blind("a", 0.0, 3) and s.may_blind("b", 0.0, 3)
    s.blinded("a", 10.0, 3)
    assert not s.may_blind("a", 11.9, 3) and s.may_blind("a", 12.0, 3)
    assert s.may_blind("b", 10.5, 3), "another venue's gatherers are not blinded"
    assert not s.may_blind("a", 12.0, 2), "not before a closed connection is open again"
    s.blinded("a", 12.0, 3, down=True)
    assert not s.may_blind("a", 100.0, 3), "not while its killed gatherer is down"
    s.restored("a", 101.0)
    assert not s.may_blind("a", 102.5, 3) and not s.may_blind("a", 103.0, 1), "nor before it connected again"
    assert s.may_blind("a", 103.0, 3)


class _Child:
    def __init__(self, name: str) -> None:
        self.name = name
        self.kills = 0
        self.starts = 0

    def kill(self) -> None:
        self.kills += 1

    def start(self) -> None:
        self.starts += 1


def test_a_drop_and_a_kill_due_in_one_tick_fire_spaced(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(pipeline_run.time, "monotonic", lambda: clock[0])
    run = PipelineRun(Config(), RunOptions(gatherers=2))
    fired: list[str] = []

    conns = [{"conn_id": 1}, {"conn_id": 2}]  # the emulator's open connections

    def admin(path: str, body: dict[str, Any] | None = None, venue: str = "") -> Any:
        if path == "/_sim/faults" and body is not None:
            fired.append(str(body["fault"]))
        return {"connections": conns} if path == "/_sim/stats" else {}

    run.sim_admin = admin  # type: ignore[method-assign]
    victim = _Child(f"gather-{run.gatherer_ids[-1]}")
    run.children[victim.name] = victim  # type: ignore[assignment]
    run.options = RunOptions(
        gatherers=2, faults=FaultPlan(None, 0.4, 0.5, restart_after_s=2.0, redeliver_at=(), bad_number_at=())
    )
    done: set[str] = set()
    kill_time: list[float] = []

    def tick(fraction: float, at: float) -> None:
        clock[0] = at
        run._faults_due(fraction, done, kill_time)
        if victim.kills > len([f for f in fired if f == "kill"]):
            fired.append("kill")

    tick(0.3, 1000.0)
    tick(0.55, 1005.0)  # a slow tick: the drop (0.4) and the kill (0.5) are both due
    assert fired == ["drop"], "the kill waits for the drop's spacing"
    tick(0.6, 1006.0)
    assert fired == ["drop"]
    conns.pop()  # a connection is down (closed, reconnecting)
    tick(0.65, 1007.5)
    assert fired == ["drop"], "nor while the venue has fewer connections open than at the drop"
    conns.append({"conn_id": 3})
    tick(0.7, 1008.0)
    assert fired == ["drop", "kill"] and victim.starts == 0
    tick(0.8, 1010.5)
    assert victim.starts == 1, "restarted restart_after_s after the kill"
