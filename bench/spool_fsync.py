"""Cost of the spool's fsync cadence (``gather.spool_fsync_s``): ``python -m bench.spool_fsync [--dir D]``.

Appends frames to a :class:`ingest.spool.Spool` at a fixed rate as a gatherer does during a broker outage (buffer
handed to the kernel every 20 ms service pass), and every ``cadence`` seconds runs :meth:`Spool.sync_job` in a worker
thread as :class:`ingest.outage.BrokerWatch` does. Prints, per cadence: fsyncs, their duration (p50/p99/max), the
process CPU per second of run, and the longest append pass (what the event loop would feel). The loss window on a
power failure is about one cadence plus one fsync.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ingest.spool import Spool

PASS_S = 0.02


def run(directory: Path, cadence: float, rate: int, frame_bytes: int, seconds: float) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    spool = Spool(directory, 1 << 34)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    value = b"x" * frame_bytes
    per_pass = max(1, int(rate * PASS_S))
    durations: list[float] = []
    pending: concurrent.futures.Future[float] | None = None
    longest_pass = 0.0
    cpu0 = os.times()
    start = last_sync = time.monotonic()
    next_pass = start
    while (now := time.monotonic()) - start < seconds:
        t0 = time.perf_counter()
        for i in range(per_pass):
            spool.append("raw.g1", b"MARKET-%d" % (i % 500), value)
        spool.flush()
        if pending is not None and pending.done():
            durations.append(pending.result())
            pending = None
        if now - last_sync >= cadence and pending is None:
            last_sync = now
            job = spool.sync_job()
            if job is not None:
                pending = pool.submit(job)
        longest_pass = max(longest_pass, time.perf_counter() - t0)
        next_pass += PASS_S
        time.sleep(max(0.0, next_pass - time.monotonic()))
    if pending is not None:
        durations.append(pending.result())
    elapsed = time.monotonic() - start
    cpu1 = os.times()
    spool.close()
    pool.shutdown()
    shutil.rmtree(directory, ignore_errors=True)
    durations.sort()

    def pct(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))] * 1000 if durations else 0.0

    return {
        "cadence_s": cadence,
        "fsyncs": len(durations),
        "fsync_p50_ms": round(pct(0.5), 2),
        "fsync_p99_ms": round(pct(0.99), 2),
        "fsync_max_ms": round(durations[-1] * 1000, 2) if durations else 0.0,
        "cpu_per_s": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed, 4),
        "longest_pass_ms": round(longest_pass * 1000, 2),
        "mb_per_s": round(rate * frame_bytes / 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="", help="spool folder to use (default: a temp folder; its disk is measured)")
    ap.add_argument("--rate", type=int, default=20_000, help="frames per second")
    ap.add_argument("--frame-bytes", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=10.0, help="per cadence")
    ap.add_argument("--cadences", default="0.02,0.1,0.25,1,5,0", help="seconds; 0 = never fsync (baseline)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="spool-fsync-"))
    try:
        for cadence in (float(c) for c in args.cadences.split(",")):
            result = run(base / "spool", cadence or float("inf"), args.rate, args.frame_bytes, args.seconds)
            print(json.dumps(result), flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
