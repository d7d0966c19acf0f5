"""`make bench-dedup`: raw topics pre-filled with F frames from 3 gatherers (2/3 duplicates), one dedup worker
(`mdpipe dedup --exit-when-idle`, a fresh app id per run) drains them; the baseline in the same run is a plain
confluent-kafka batch consumer reading the same topics and doing nothing. Prints medians; last line RESULT {json}.

The headline ``value`` is the default engine (``dedup.engine``, or ``--engine``); the Faust engine is measured in
the same runs as well (``faust_frames_s``, ``faust_frames_per_cpu_s``) unless ``--no-faust``.

The worker's figure is raw frames / (last frame - first frame) as the worker measured it, so start-up
(group join, table recovery) and the idle wait are excluded; ``wall_s`` reports the whole run as well,
``frames_per_cpu_s`` the same frames per CPU-second of the worker process (less sensitive to a loaded
machine), ``logic_only_frames_s`` the decision + normalisation alone on rocksdict without Kafka or Faust, and
``faust_noop_*`` a Faust worker whose agent does nothing with the same frames (Faust's own ceiling).
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

from bench.dedup.baseline import drain
from bench.dedup.logic_only import measure as measure_logic
from dedup_stream.synth import gatherer_copies, produce_frames, venue_events
from mdpipe.config import load_config

GATHERERS = ("g1", "g2", "g3")


def run_worker(
    bootstrap: str, prefix: str, partitions: int, workdir: Path, app_id: str, engine: str
) -> dict[str, float]:
    env = {
        **os.environ,
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MDPIPE_KAFKA__TOPIC_PREFIX": prefix,
        "MDPIPE_KAFKA__PARTITIONS": str(partitions),
        "MDPIPE_GATHER__IDS": json.dumps(list(GATHERERS)),
        "MDPIPE_RUN_DIR": str(workdir / "run"),
    }
    cmd = [sys.executable, "-m", "mdpipe", "dedup", "--app-id", app_id, "--workdir", str(workdir / "state")]
    cmd += ["--engine", engine, "--exit-when-idle", "--idle-s", "2", "--metrics-port", "0"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
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
    parser.add_argument("--frames", type=int, default=300_000, help="raw frames in total (a third per gatherer)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (medians are reported)")
    parser.add_argument("--markets", type=int, default=2000, help="distinct markets (keys)")
    parser.add_argument("--engine", choices=["native", "faust"], help="engine of the headline figure (dedup.engine)")
    parser.add_argument("--no-faust", action="store_true", help="skip the Faust engine and Faust no-op runs")
    args = parser.parse_args(argv)

    config = load_config()
    engine = args.engine or config.dedup.engine
    with_faust = not args.no_faust
    bootstrap, partitions = config.kafka.bootstrap_servers, config.kafka.partitions
    if not bootstrap:
        print("bench-dedup: no broker (run `make up`)", file=sys.stderr)
        return 2
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    prefix = f"bench-dedup-{uuid.uuid4().hex[:8]}."
    raw_topics = [f"{prefix}raw.{g}" for g in GATHERERS]
    names = [*raw_topics, f"{prefix}events", f"{prefix}dlq"]
    for fut in admin.create_topics([NewTopic(t, partitions, 1) for t in names]).values():
        fut.result()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    try:
        events = venue_events(args.frames // len(GATHERERS), markets=args.markets, seed=3)
        t = time.perf_counter()
        for i, g in enumerate(GATHERERS):
            frames = gatherer_copies(events, g, delay_ns=i * 1_000_000, reorder=3)
            produce_frames({"bootstrap.servers": bootstrap}, f"{prefix}raw.{g}", frames)
        total = len(events) * len(GATHERERS)
        print(f"prefilled {total} frames ({len(events)} events, {partitions} partitions) "
              f"in {time.perf_counter() - t:.1f}s", flush=True)  # fmt: skip

        base_rates, rates, cpu_rates, walls = [], [], [], []
        noop_rates: list[float] = []
        noop_cpu_rates: list[float] = []
        faust_rates: list[float] = []
        faust_cpu_rates: list[float] = []
        for run in range(args.runs):
            count, secs = drain(bootstrap, raw_topics)
            assert count == total, f"baseline read {count} of {total}"
            base_rates.append(count / secs)
            result = run_worker(bootstrap, prefix, partitions, tmp / f"run{run}", f"{prefix}app-{run}", engine)
            if result["frames"] != total or result["events_out"] != len(events):
                raise RuntimeError(f"dedup run {run}: {result} for {total} frames / {len(events)} events")
            rates.append(result["frames"] / result["busy_s"])
            cpu_rates.append(result["frames"] / result["cpu_s"])
            walls.append(result["wall_s"])
            if with_faust:
                if engine != "faust":
                    faust = run_worker(bootstrap, prefix, partitions, tmp / f"f{run}", f"{prefix}faust-{run}", "faust")
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
            print(f"run {run}: baseline {base_rates[-1]:,.0f} frames/s, dedup ({engine}) {rates[-1]:,.0f} frames/s "
                  f"({cpu_rates[-1]:,.0f} per CPU-second; busy {result['busy_s']:.1f}s, cpu {result['cpu_s']:.1f}s, "
                  f"wall {result['wall_s']:.1f}s)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for fut in admin.delete_topics(mine, operation_timeout=30).values():
            try:
                fut.result()
            except Exception as exc:
                print(f"cleanup: {exc}", file=sys.stderr)
    logic_rate = measure_logic(events=min(50_000, len(events)), markets=args.markets)
    print(f"logic only (decide + normalise, rocksdict, no Kafka): {logic_rate:,.0f} frames/s", flush=True)
    value, baseline = statistics.median(rates), statistics.median(base_rates)
    if engine == "faust":
        faust_rates, faust_cpu_rates = rates, cpu_rates

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
        "rates": [round(r) for r in rates],
        "baseline_rates": [round(r) for r in base_rates],
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    raise SystemExit(guarded(main, "bench.dedup"))  # expected failures: one line, no traceback
