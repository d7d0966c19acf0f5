"""`make bench-failover`: how long the pipeline stops delivering when the dedup worker, later the sink, is SIGKILLed.

One run at ``--rate`` events/s (10,000) with 3 gatherers, 1 dedup worker and 1 sink, the venue's own behaviours on
and no other fault. Before it, ``--warmup-s`` seconds (60; 0 = none) of the same traffic go through a pipeline of
their own, unmeasured, as in bench-e2e: a broker that has just started costs more CPU per event while its JVM compiles
its hot paths (docs/perf-broker.md), and a run on a cold broker starts behind (its p99 before the first kill was
seconds) and measures that, not how fast a stage recovers. The failover figures are recovery times, not start-up:
the run first waits for the steady state (:mod:`ops.settle`: the dedup worker's and the sink's consumer lag at most
``--settle-lag`` s for ``--settle-hold`` s in a row, at most ``--settle-timeout`` s; ``--settle-lag 0`` does not
wait), then runs ``--duration`` s (60) more. At
``--dedup-kill-at`` of that duration (0.3) the dedup worker is SIGKILLed and started again at once (same work dir:
its local state kept), as a supervisor would; at ``--sink-kill-at`` (0.7) the sink likewise. ``recoveries_overlap``
says when the first kill's first commit came after the second kill (its figures then include the second outage: give
the run more time). Apart from that wait this harness measures whatever the code does; it never tunes.

Per kill, from the hop stamps of every event (:mod:`ops.hops`; events topic + the sink's hop trace) and the
restarted stage's log:

- ``first_commit_s``: kill -> the first commit, in the database, of an event the venue generated after the kill;
- ``started_s``: kill -> the new process's first log line (process start-up);
- ``rejoined_s``: kill -> its consumer group assignment (for dedup: before its changelog restore);
- ``restore_s`` / ``restored``: dedup's changelog restore time and records (from its ``partitions_assigned`` line);
- ``first_<boundary>_s``: kill -> the first time an event generated after the kill reached each boundary (``recv``,
  ``raw``, ``dedup``, ``events``, ``read``, ``commit``): where the pipeline was held up.

Last line ``RESULT {json}``: ``value`` = the worst ``first_commit_s`` (seconds); ``baseline`` = p99 venue->committed
(seconds) of the same run's events generated after the steady state (without the wait: after the warm-up) and more
than ``GUARD_S`` before the first kill (the pipeline's normal delivery time); ``ratio`` = value / baseline; per-kill
figures; the start-up figures (``startup``: seconds from the start of generation to the steady state, null if never
reached, the p99 venue->committed of the events generated before it and the largest lags of that time); and the
verdict of ``mdpipe verify`` over the whole run, start-up included (``missing``, ``duplicated``: both must be 0).
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.e2e.__main__ import one_run
from mdpipe.config import load_config, run_dir
from ops.hops import BOUNDARIES, TOTAL, format_hops
from ops.pipeline_run import FaultPlan, PipelineRun, Progress, RunOptions
from ops.settle import Settle

WARMUP_S = 10.0  # as bench-e2e: the initial snapshot burst is left out of the baseline
GUARD_S = 5.0  # events generated this close before the first kill are left out of the baseline
VERDICT_KEYS = ("missing", "duplicated", "unexpected", "reported_losses", "markets_uncovered", "books_mismatched")
_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_log_line(line: str) -> dict[str, Any]:
    """One ``key=value`` log line (mdpipe.logging) as a dict; ``ts`` becomes ``ts_ns`` (Unix ns)."""
    out: dict[str, Any] = {}
    for key, value in _KV.findall(line):
        out[key] = json.loads(value) if value.startswith('"') else value
    ts = out.get("ts")
    if isinstance(ts, str) and ts.endswith("Z"):
        whole, _, frac = ts[:-1].partition(".")
        secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        out["ts_ns"] = secs * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
    return out


def log_lines_after(path: Path, after_ns: int) -> list[dict[str, Any]]:
    """The parsed lines of a stage's log written at or after ``after_ns`` (a restarted stage appends to its log)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [parse_log_line(line) for line in text.splitlines() if line.startswith("ts=")]
    return [d for d in lines if d.get("ts_ns", 0) >= after_ns - 1_000_000]  # the log's ms resolution


def stage_figures(name: str, kill_ns: int, log_path: Path, firsts: dict[str, int]) -> dict[str, Any]:
    """The figures of one kill (module docstring), from the restarted stage's log and the hop marks."""
    lines = log_lines_after(log_path, kill_ns)
    out: dict[str, Any] = {"stage": name}
    if lines:
        out["started_s"] = round((lines[0]["ts_ns"] - kill_ns) / 1e9, 3)
    assigned = next((d for d in lines if d.get("event") == "partitions_assigned"), None)
    if assigned is not None:
        restore_s = float(assigned.get("restore_s", 0.0))
        out["rejoined_s"] = round((assigned["ts_ns"] - kill_ns) / 1e9 - restore_s, 3)
        if "restore_s" in assigned:
            out["restore_s"] = restore_s
            out["restored"] = int(assigned.get("restored", 0))
    for boundary in BOUNDARIES[1:]:
        if boundary in firsts:
            out[f"first_{boundary}_s"] = round((firsts[boundary] - kill_ns) / 1e9, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="venue events/s (10000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of generation (60)")
    parser.add_argument("--markets", type=int, default=20_000, help="markets (20000)")
    parser.add_argument("--gatherers", type=int, default=3, help="gatherers (3)")
    parser.add_argument("--dedup-kill-at", type=float, default=0.3, help="fraction of the run (0.3)")
    parser.add_argument("--sink-kill-at", type=float, default=0.7, help="fraction of the run (0.7)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=60.0,
        help="seconds of unmeasured traffic at --rate before the run (its own pipeline, the same broker), so that a "
        "freshly started broker's JIT compiler has compiled its hot paths (60; 0 = none)",
    )
    parser.add_argument("--settle-lag", type=float, default=1.0, help="steady: lag at most this, s (1; 0: no wait)")
    parser.add_argument("--settle-hold", type=float, default=5.0, help="steady: for this long in a row, s (5)")
    parser.add_argument("--settle-timeout", type=float, default=120.0, help="wait at most this long, s (120)")
    args = parser.parse_args(argv)
    settle = Settle(args.settle_lag, args.settle_hold, args.settle_timeout) if args.settle_lag > 0 else None

    options = RunOptions(
        markets=args.markets,
        rate=args.rate,
        duration_s=args.duration,
        gatherers=args.gatherers,
        dedup_workers=1,
        faults=FaultPlan(
            None,
            None,
            None,
            redeliver_at=(),
            bad_number_at=(),
            crash_restart_at=((args.dedup_kill_at, "dedup-1"), (args.sink_kill_at, "sink")),
        ),
        workdir=run_dir() / "bench-failover",
        drain_timeout_s=300.0,
        database="mdpipe_bench_failover",
        hop_trace=True,
        settle=settle,
    )
    if args.warmup_s > 0:
        one_run(args.rate, args.warmup_s, args.markets, args.gatherers, False, "warmup", name="bench-failover-warmup")
    run = PipelineRun(load_config(), options)
    lags: list[tuple[float, int, int]] = []  # (elapsed s, dedup lag, sink lag) in records

    def keep(p: Progress) -> None:
        lags.append((round(p.elapsed_s, 1), p.dedup_lag, p.sink_lag))

    try:
        run.start()
        run.run(keep)
    finally:
        run.stop()
    kills = list(run.kills)
    if len(kills) != 2:
        raise RuntimeError(f"expected two kills, the run made {kills}")
    steady_ns = max(run.schedule_started_ns, run.generation_started_ns + int(WARMUP_S * 1e9))
    windows = {"baseline": (steady_ns, kills[0][1] - int(GUARD_S * 1e9))}
    if settle is not None:
        windows["startup"] = (run.generation_started_ns, run.schedule_started_ns)
    report = run.verify(warmup_s=WARMUP_S, windows=windows, marks=tuple(k for _, k in kills))
    figures = []
    for (name, kill_ns), firsts in zip(kills, report["hop_marks"], strict=True):
        fig = stage_figures(name, kill_ns, run.children[name].log_path, firsts)
        fig["kill_at_s"] = round((kill_ns - run.generation_started_ns) / 1e9, 1)
        fig["first_commit_s"] = round((firsts["commit"] - kill_ns) / 1e9, 3) if "commit" in firsts else None
        figures.append(fig)
        print(json.dumps({"kill": fig}), flush=True)
    print("hops over the whole run (events generated after the warm-up):", flush=True)
    print(format_hops(report["hops_ms"], [("venue->database", report["latency_ms"])]), flush=True)
    base_ms = report["hop_windows"]["baseline"][TOTAL].get("p99")
    commits = [f["first_commit_s"] for f in figures]
    first_back_ns = report["hop_marks"][0].get("commit", 2**63 - 1)
    value = None if any(c is None for c in commits) else max(commits)  # type: ignore[type-var]
    baseline = base_ms / 1000 if base_ms else None
    startup_s = (run.schedule_started_ns - run.generation_started_ns) / 1e9
    startup_ms = report["hop_windows"].get("startup", {}).get(TOTAL, {})
    result = {
        "bench": "failover",
        "value": value,
        "unit": "s from a SIGKILL to the first commit of an event generated after it (worst of dedup, sink)",
        "baseline": baseline,
        "baseline_unit": "s p99 venue->committed of the same run before the first kill (after the warm-up)",
        "ratio": round(value / baseline, 2) if value is not None and baseline else None,
        "runs": 1,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup_s,
        "kills": figures,
        "recoveries_overlap": first_back_ns > kills[1][1],
        "baseline_events": report["hop_windows"]["baseline"][TOTAL].get("count", 0),
        "p50_ms": report["latency_ms"].get("p50"),
        "p99_ms": report["latency_ms"].get("p99"),
        "max_lag_records": {
            "dedup": max((d for t, d, _ in lags if t >= startup_s), default=0),
            "sink": max((s for t, _, s in lags if t >= startup_s), default=0),
        },
        "startup": {
            "settled_s": run.settled_s,
            "settle": None if settle is None else {"lag_s": settle.lag_s, "hold_s": settle.hold_s},
            "p99_s": round(startup_ms["p99"] / 1000, 2) if startup_ms.get("p99") else None,
            "max_lag_records": {
                "dedup": max((d for t, d, _ in lags if t < startup_s), default=0),
                "sink": max((s for t, _, s in lags if t < startup_s), default=0),
            },
        },
        "clean": report["clean"],
        **{k: report[k] for k in VERDICT_KEYS},
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
