"""`make bench-dedup`: one dedup worker, two cases, each against a baseline measured in the same run.

Input in both cases is what a pipeline run's raw topics hold: three gatherers' copies of the pipeline's mix of venue
events (deltas, tickers, trades, snapshots, lifecycle; :func:`dedup_stream.synth.pipeline_events`), written by one
producer per gatherer configured like ``mdpipe gather``'s (compression, linger) at a pipeline's pace
(:mod:`bench.dedup.feed`), so the worker reads small compressed batches as it does in a pipeline.

1. Backlog (the headline): the raw topics are pre-filled with F frames (at ``--prefill-rate`` events/s); a worker
   (`mdpipe dedup --exit-when-idle`, a fresh app id per run) drains them. Baseline: a plain confluent-kafka batch
   consumer reading the same topics and doing nothing. ``value`` = raw frames / (last frame - first frame) as the
   worker measured it (start-up, group join and the idle wait excluded; ``wall_s`` reports the whole run),
   ``frames_per_cpu_s`` the same frames per CPU-second of the worker process.
2. Paced (``--rates``, venue events/s; three frames each): a worker fed live at a moderate rate, where per-batch,
   per-wake-up and per-commit costs are paid far more often than at saturation (:mod:`bench.dedup.paced`):
   ``paced[rate]`` gives CPU per frame (all threads, and split into the Python thread and librdkafka's), its ratio
   to the backlog case, and the dedup hop's latency p50/p99 (winning copy appended to its raw topic -> its event
   appended).

The Faust engine is measured in the backlog case as well (``faust_frames_s``, ``faust_noop_*``: a Faust worker
whose agent does nothing, Faust's own ceiling) unless ``--no-faust``; ``logic_only_frames_s`` is the decision +
normalisation alone on rocksdict, without Kafka. ``--worker-tree DIR`` runs the workers from another checkout (the
same benchmark on older code, for before/after figures). Prints medians; last line RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.dedup.baseline import drain
from bench.dedup.feed import GATHERERS
from bench.dedup.logic_only import measure as measure_logic
from bench.dedup.paced import create_topics, delete_topics, paced_run, worker_env
from mdpipe.config import load_config


def run_worker(
    bootstrap: str,
    prefix: str,
    partitions: int,
    workdir: Path,
    app_id: str,
    engine: str,
    worker_tree: Path | None = None,
) -> dict[str, float]:
    env = worker_env(bootstrap, prefix, partitions, workdir / "run")
    if worker_tree is not None:
        env["PYTHONPATH"] = str(worker_tree)
    cmd = [sys.executable, "-m", "mdpipe", "dedup", "--app-id", app_id, "--workdir", str(workdir / "state")]
    cmd += ["--engine", engine, "--exit-when-idle", "--idle-s", "2", "--metrics-port", "0"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=worker_tree)
    wall = time.perf_counter() - started
    stop = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "event=dedup_stop" in line]
    if proc.returncode != 0 or not stop:
        raise RuntimeError(f"dedup worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    fields = dict(re.findall(r"(\w+)=([\d.]+)(?=\s|$)", stop[-1]))
    return {"frames": float(fields["frames"]), "busy_s": float(fields["busy_s"]), "cpu_s": float(fields["busy_cpu_s"]),
            "events_out": float(fields["events_out"]), "wall_s": wall}  # fmt: skip


def run_noop(bootstrap: str, raw_topics: list[str], workdir: Path, app_id: str) -> dict[str, float]:
    """Faust's own ceiling: the same topics through an agent that does nothing, consuming like the worker does
    (``take_events(1000)``; bench/dedup/faust_noop.py)."""
    cmd = [sys.executable, "-m", "bench.dedup.faust_noop", bootstrap, app_id, str(workdir), "1000", *raw_topics]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    found = re.search(r"frames=(\d+) busy_s=([\d.]+) busy_cpu_s=([\d.]+)", proc.stdout + proc.stderr)
    if not found:
        raise RuntimeError(f"faust no-op run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"frames": float(found[1]), "busy_s": float(found[2]), "cpu_s": float(found[3])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__)
    parser.add_argument("--frames", type=int, default=300_000, help="backlog: raw frames in total (a third each)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case (medians are reported)")
    parser.add_argument("--markets", type=int, default=20_000, help="distinct markets")
    parser.add_argument("--engine", choices=["native", "faust"], help="engine of the headline figure (dedup.engine)")
    parser.add_argument("--no-faust", action="store_true", help="skip the Faust engine and Faust no-op runs")
    parser.add_argument("--prefill-rate", type=float, default=10_000, help="backlog: events/s it is written at")
    parser.add_argument(
        "--rates", default="5000,10000", help="paced: venue events/s, comma-separated ('' skips the paced case)"
    )
    parser.add_argument("--paced-s", type=float, default=20.0, help="paced: measured window (s)")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="paced: fed before the window starts (s)")
    parser.add_argument("--worker-tree", type=Path, help="run the workers from this checkout (before/after runs)")
    parser.add_argument("--profile", type=Path, help="paced: profile each worker over its window into DIR")
    parser.add_argument(
        "--profiler", choices=["txt", "data"], default="txt", help="txt: py-spy (Python, GIL held); data: perf -g"
    )
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]

    config = load_config()
    engine = args.engine or config.dedup.engine
    with_faust = not args.no_faust
    bootstrap, partitions = config.kafka.bootstrap_servers, config.kafka.partitions
    if not bootstrap:
        print("bench-dedup: no broker (run `make up`)", file=sys.stderr)
        return 2
    prefix = f"bench-dedup-{uuid.uuid4().hex[:8]}."
    raw_topics = [f"{prefix}raw.{g}" for g in GATHERERS]
    create_topics(bootstrap, prefix, partitions)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    worker_tree = args.worker_tree.resolve() if args.worker_tree else None
    paced: dict[float, list[dict[str, Any]]] = {rate: [] for rate in rates}
    try:
        t = time.perf_counter()
        n_events = args.frames // len(GATHERERS)
        fed = subprocess.run(
            [sys.executable, "-m", "bench.dedup.feed", bootstrap, prefix, str(args.prefill_rate),
             str(n_events / args.prefill_rate), "--markets", str(args.markets), "--seed", "3"],
            capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        total = int(fed.stdout.split("frames=")[1].split()[0])
        events = range(total // len(GATHERERS))
        print(f"prefilled {total} frames ({len(events)} events, {partitions} partitions) "
              f"in {time.perf_counter() - t:.1f}s", flush=True)  # fmt: skip

        base_rates, rates_backlog, cpu_rates, walls = [], [], [], []
        noop_rates: list[float] = []
        noop_cpu_rates: list[float] = []
        faust_rates: list[float] = []
        faust_cpu_rates: list[float] = []
        for run in range(args.runs):
            count, secs = drain(bootstrap, raw_topics)
            assert count == total, f"baseline read {count} of {total}"
            base_rates.append(count / secs)
            result = run_worker(
                bootstrap, prefix, partitions, tmp / f"run{run}", f"{prefix}app-{run}", engine, worker_tree
            )
            if result["frames"] != total or result["events_out"] != len(events):
                raise RuntimeError(f"dedup run {run}: {result} for {total} frames / {len(events)} events")
            rates_backlog.append(result["frames"] / result["busy_s"])
            cpu_rates.append(result["frames"] / result["cpu_s"])
            walls.append(result["wall_s"])
            if with_faust:
                if engine != "faust":
                    faust = run_worker(
                        bootstrap, prefix, partitions, tmp / f"f{run}", f"{prefix}faust-{run}", "faust", worker_tree
                    )
                    if faust["frames"] != total or faust["events_out"] != len(events):
                        raise RuntimeError(f"faust run {run}: {faust} for {total} frames / {len(events)} events")
                    faust_rates.append(faust["frames"] / faust["busy_s"])
                    faust_cpu_rates.append(faust["frames"] / faust["cpu_s"])
                    print(f"run {run}: faust engine {faust_rates[-1]:,.0f} frames/s "
                          f"({faust_cpu_rates[-1]:,.0f} per CPU-second)", flush=True)  # fmt: skip
                noop = run_noop(bootstrap, raw_topics, tmp / f"noop{run}", f"{prefix}noop-{run}")
                noop_rates.append(noop["frames"] / noop["busy_s"])
                noop_cpu_rates.append(noop["frames"] / noop["cpu_s"])
                print(f"run {run}: faust no-op agent {noop_rates[-1]:,.0f} frames/s "
                      f"({noop_cpu_rates[-1]:,.0f} per CPU-second)", flush=True)  # fmt: skip
            print(f"run {run}: baseline {base_rates[-1]:,.0f} frames/s, "
                  f"dedup ({engine}) {rates_backlog[-1]:,.0f} frames/s ({cpu_rates[-1]:,.0f} per CPU-second; "
                  f"busy {result['busy_s']:.1f}s, cpu {result['cpu_s']:.1f}s, "
                  f"wall {result['wall_s']:.1f}s)", flush=True)  # fmt: skip
            for rate in rates:
                figures = paced_run(
                    bootstrap, partitions, tmp / f"paced{run}-{int(rate)}", rate, args.paced_s, args.warmup_s,
                    args.markets, worker_tree,
                    args.profile / f"paced{run}-{int(rate)}.{args.profiler}" if args.profile else None,
                )  # fmt: skip
                paced[rate].append(figures)
                print(f"run {run}: paced at {rate:,.0f} events/s: {figures['us_per_frame']:.1f} µs CPU per frame "
                      f"({figures['us_per_frame_by_thread']}), {figures['core_share']:.0%} of a core, broker "
                      f"{figures['broker_us_per_frame']} µs per frame, dedup hop {figures['latency_ms']} ms "
                      f"(feeder {figures['feeder_latency_ms']})", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        delete_topics(bootstrap, prefix)
    logic_rate = measure_logic(events=min(50_000, len(events)), markets=args.markets)
    print(f"logic only (decide + normalise, rocksdict, no Kafka): {logic_rate:,.0f} frames/s", flush=True)
    value, baseline = statistics.median(rates_backlog), statistics.median(base_rates)
    if engine == "faust":
        faust_rates, faust_cpu_rates = rates_backlog, cpu_rates

    def median(values: list[float]) -> int | None:
        return round(statistics.median(values)) if values else None

    result = {
        "bench": "dedup",
        "value": round(value),
        "unit": "frames/s",
        "baseline": round(baseline),
        "ratio": round(value / baseline, 4),
        "runs": args.runs,
        "frames": total,
        "events": len(events),
        "partitions": partitions,
        "workers": 1,
        "engine": engine,
        "target": 30000,
        "frames_per_cpu_s": round(statistics.median(cpu_rates)),
        "logic_only_frames_s": round(logic_rate),
        "faust_frames_s": median(faust_rates),
        "faust_frames_per_cpu_s": median(faust_cpu_rates),
        "faust_noop_frames_s": median(noop_rates),
        "faust_noop_frames_per_cpu_s": median(noop_cpu_rates),
        "wall_s_median": round(statistics.median(walls), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "rates": [round(r) for r in rates_backlog],
        "baseline_rates": [round(r) for r in base_rates],
        "paced": {str(int(rate)): paced_summary(runs, statistics.median(cpu_rates)) for rate, runs in paced.items()},
    }
    print("RESULT " + json.dumps(result))
    return 0


def paced_summary(runs: list[dict[str, Any]], backlog_frames_per_cpu_s: float) -> dict[str, Any]:
    """Medians of one rate's paced runs; ``cpu_ratio_to_backlog`` = CPU per frame paced / CPU per frame draining."""
    per_cpu = statistics.median(r["frames_per_cpu_s"] for r in runs)
    threads = {k for r in runs for k in r["us_per_frame_by_thread"]}
    return {
        "frames_s": round(statistics.median(r["frames_s"] for r in runs)),
        "frames_per_cpu_s": round(per_cpu),
        "us_per_frame": round(statistics.median(r["us_per_frame"] for r in runs), 2),
        "us_per_frame_by_thread": {
            k: round(statistics.median(r["us_per_frame_by_thread"].get(k, 0.0) for r in runs), 2)
            for k in sorted(threads)
        },
        "cpu_ratio_to_backlog": round(backlog_frames_per_cpu_s / per_cpu, 2),
        "core_share": round(statistics.median(r["core_share"] for r in runs), 3),
        "broker_us_per_frame": statistics.median(r["broker_us_per_frame"] or 0.0 for r in runs),
        "latency_p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "latency_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in runs),
        "latency_max_ms": max(r["latency_ms"]["max"] for r in runs),
        "feeder_latency_p99_ms": statistics.median(r["feeder_latency_ms"]["p99"] for r in runs),
    }


if __name__ == "__main__":
    from mdpipe.failures import guarded

    raise SystemExit(guarded(main, "bench.dedup"))  # expected failures: one line, no traceback
