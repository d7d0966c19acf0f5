"""`python -m bench.sink.latency_cost`: what the venue -> database latency histogram costs per row, in process.

The row builder (:func:`sink.batch.build_rows`, C when built) over the same payloads, in batches of ``--batch``,
without stamps and with stamps plus the after-commit bucketing (:meth:`sink.latency.LatencyHistogram.observe_batch`),
alternated ``--runs`` times; CPU time per row (``time.process_time``), medians, and the difference in ns per row.
``make bench-sink`` measures the whole sink, where a cost this small is inside the run-to-run noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench.sink.data import make_events
from schemas import encode_event
from sink import rowcodec
from sink.batch import build_rows
from sink.latency import LatencyHistogram


def one_pass(batches: list[list[bytes]], stamped: bool, hist: LatencyHistogram) -> float:
    fast = rowcodec.fast_build()
    started = time.process_time()
    for payloads in batches:
        rows: dict[str, list[bytes]] = {}
        stamps = bytearray() if stamped else None
        build_rows(payloads, None, None, rows, fast=fast, stamps=stamps)
        if stamps is not None:
            hist.observe_batch(stamps, time.time_ns())
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink.latency_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="rows per batch (a paced sink's batch size)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    payloads = [encode_event(e) for e in make_events(args.events, markets=2000, seed=4)]
    batches = [payloads[i : i + args.batch] for i in range(0, len(payloads), args.batch)]
    hist = LatencyHistogram("bench_latency_seconds")
    plain, stamped = [], []
    for _ in range(args.runs):
        plain.append(one_pass(batches, False, hist) / len(payloads) * 1e9)
        stamped.append(one_pass(batches, True, hist) / len(payloads) * 1e9)
    p, s = statistics.median(plain), statistics.median(stamped)
    result = {
        "bench": "sink-latency-cost",
        "value": round(s - p, 1),
        "unit": "ns per row (build with stamps + bucketing, minus build alone)",
        "build_ns_per_row": round(p, 1),
        "build_stamped_ns_per_row": round(s, 1),
        "ratio": round(s / p, 4),
        "runs": args.runs,
        "batch": args.batch,
        "c_builder": rowcodec.ACCELERATED,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
