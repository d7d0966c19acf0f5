"""When a whole-pipeline run has reached its steady state after start-up (pure logic, no I/O).

A freshly started pipeline first works off a start-up backlog: every gatherer subscribes every market and the venue
answers each subscription with a snapshot, and a freshly started broker acknowledges slowly for its first minute or so.
A run that measures something of the steady state (bench-failover's recovery time) first waits for it: the
dedup workers' and the sink's consumer lag (each stage's ``lag_s`` gauge: the age of the oldest record waiting for
it, 0 when it has read everything) at most ``lag_s`` for ``hold_s`` seconds in a row. It waits at most
``timeout_s``; the run then goes on and reports that it never settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Settle", "SettleWatch", "stage_lags"]


@dataclass(frozen=True)
class Settle:
    """What counts as the steady state (module docstring)."""

    lag_s: float = 1.0
    hold_s: float = 5.0
    timeout_s: float = 120.0


def stage_lags(stages: Mapping[str, Mapping[str, Mapping[str, Any]]], expected: int) -> list[float] | None:
    """The ``lag_s`` of every dedup worker and sink in one progress sample (``stages``: section -> child name ->
    figures); None unless ``expected`` stages answered (a stage restarting or not scraped is not steady) and a sink
    has stored rows (a lag of 0 before the first frames arrive is a pipeline not yet started, not a steady one)."""
    if not any((figures.get("rows_total") or 0) > 0 for figures in stages.get("sink", {}).values()):
        return None
    lags = [
        float(figures["lag_s"])
        for section in ("dedup", "sink")
        for figures in stages.get(section, {}).values()
        if figures.get("lag_s") is not None
    ]
    return lags if len(lags) >= expected else None


class SettleWatch:
    """Fed one sample at a time; says when the lags have stayed within :attr:`Settle.lag_s` for ``hold_s``."""

    def __init__(self, settle: Settle) -> None:
        self.settle = settle
        self.since: float | None = None  # elapsed seconds of the first sample of the current steady stretch
        self.settled_at: float | None = None  # elapsed seconds when the steady stretch began, once it held

    def observe(self, elapsed_s: float, lags: list[float] | None) -> bool:
        """True once settled (and from then on)."""
        if self.settled_at is not None:
            return True
        if lags is None or max(lags, default=0.0) > self.settle.lag_s:
            self.since = None
            return False
        if self.since is None:
            self.since = elapsed_s
        if elapsed_s - self.since >= self.settle.hold_s:
            self.settled_at = self.since
            return True
        return False

    def timed_out(self, elapsed_s: float) -> bool:
        return self.settled_at is None and elapsed_s >= self.settle.timeout_s
