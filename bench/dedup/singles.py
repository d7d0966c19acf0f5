"""The singles tracker's cost per event at its steady state (``dedup_stream.logic.SinglesTracker``, issue 13).

The dedup worker calls the tracker for every raw frame: ``first`` for an event's first copy, ``copy`` for each later
one, and ``expire`` once a second. At 10,000 events/s its default 30-s horizon spans 300,000 events, which a 30-s
bench-e2e run reaches only at its end (its tracker starts empty), so this drives the tracker alone through
``--events`` first copies, each followed by two copies ``--lag`` events later, and prints CPU ns per event (thread
CPU, whole loop, median of ``--runs``).

``--tree DIR`` measures another source tree's tracker (e.g. ``git worktree add`` of main) with this loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def measure(events: int, lag: int, rate: int) -> tuple[float, int]:
    """ns of thread CPU per event for ``events`` events at ``rate`` events/s; also the singles counted."""
    from dedup_stream.logic import SinglesTracker, Stats

    keys = [b"KXBENCH-%05d\x1fd:%016x:1" % (i % 20_000, i) for i in range(events)]
    for key in keys:
        hash(key)  # the store's cache hands the tracker keys whose hash is computed already
    tracker, stats = SinglesTracker(30_000_000_000), Stats()
    first, copy = tracker.first, tracker.copy
    step = 1_000_000_000 // rate
    now = 0
    t0 = time.thread_time_ns()
    for i, key in enumerate(keys):
        now += step
        first(key, "g1", now)
        if i >= lag and i % 100:  # every hundredth event stays single
            earlier = keys[i - lag]
            copy(earlier)
            copy(earlier)
        if i % rate == 0:
            tracker.expire(now, stats)
    elapsed = time.thread_time_ns() - t0
    return elapsed / events, stats.gatherer("g1").singles


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dedup.singles", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=900_000, help="first copies driven through the tracker")
    p.add_argument("--lag", type=int, default=300, help="events between a first copy and its two later copies")
    p.add_argument("--rate", type=int, default=10_000, help="venue events per second (sets the receive times)")
    p.add_argument("--runs", type=int, default=5, help="runs; the median is reported")
    p.add_argument("--tree", default=None, help="source tree whose dedup_stream to measure (default: this one)")
    ns = p.parse_args(argv)
    if ns.tree:
        sys.path.insert(0, ns.tree)
    runs = [measure(ns.events, ns.lag, ns.rate) for _ in range(ns.runs)]
    per_event = [round(r[0]) for r in runs]
    print(
        "RESULT "
        + json.dumps(
            {
                "bench": "dedup-singles",
                "value": statistics.median(per_event),
                "unit": "CPU ns per event (first copy + 2 copies + expiry)",
                "runs_ns": per_event,
                "singles": runs[0][1],
                "tree": ns.tree or ".",
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
