"""What the hop stamps cost per event (``python -m bench.e2e.stamps``): the instruments of `make bench-e2e` priced.

The stamps (:mod:`schemas.events` ``raw_ts_ms`` and ``dedup_ns``) cost the dedup worker, per emitted event, reading
the raw record's timestamp, setting two fields and encoding two more integers; they cost the sink's C row builder
reading two more integers per record, and the ``events`` topic their bytes. Measured here on the same synthetic
events either way, best of ``--repeat`` rounds (no Kafka, no database: the per-event work alone). The broker's
append-time stamps (LogAppendTime) and the sink's hop trace (one entry per run of records, not per record) are not
per-event work and are not priced here. ``sink_us_python_path`` is what each record would cost the sink had the C
row builder not learnt to read past the stamps (every stamped record would take the Python path).

Prints one JSON line per figure and ``RESULT {json}`` with ``value`` = the stamps' CPU per event (dedup + sink, µs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import msgspec
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from dedup_stream.logic import Deduper, MemoryStore, Origin
from dedup_stream.normalise import decision_event
from dedup_stream.synth import gatherer_copies, venue_events
from schemas import encode_event, encode_raw
from sink.batch import build_rows
from sink.rowcodec import fast_build


def best_us(fns: dict[str, Callable[[], int]], repeat: int) -> dict[str, float]:
    """Per function (each returns how many events it did), its fastest round in µs per event; rounds of the
    functions alternate so that a noisy moment touches them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            n = fn()
            best[name] = min(best[name], (time.perf_counter() - started) / n * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e.stamps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="synthetic venue events (50000)")
    parser.add_argument("--repeat", type=int, default=15, help="rounds; the fastest counts (15)")
    args = parser.parse_args(argv)

    frames = gatherer_copies(venue_events(args.events, markets=2000, seed=9), "g1")
    deduper = Deduper(MemoryStore())
    won = []
    for offset, frame in enumerate(frames):
        decision = deduper.decide(encode_raw(frame), Origin("raw.g1", 0, offset))
        if decision.emit:
            msg = Message(topic="raw.g1", partition=0, offset=offset, value=b"", timestamp=(
                TIMESTAMP_LOG_APPEND_TIME, frame.recv_ns // 1_000_000 + 3))  # fmt: skip
            won.append((decision, msg))
    read_ns = time.time_ns()

    def dedup_plain() -> int:
        for decision, _ in won:
            encode_event(decision_event(decision))
        return len(won)

    def dedup_stamped() -> int:
        for decision, msg in won:
            encode_event(decision_event(decision, msg.timestamp()[1], read_ns))
        return len(won)

    stamped = [encode_event(decision_event(d, m.timestamp()[1], read_ns)) for d, m in won]
    older = [msgspec.msgpack.encode(msgspec.msgpack.decode(p)[:-2]) for p in stamped]  # the layout without stamps
    fast = fast_build()

    def sink(payloads: list[bytes], c: bool = True) -> Callable[[], int]:
        def build() -> int:
            build_rows(payloads, None, None, {}, fast=fast if c else None)
            return len(payloads)

        return build

    figures: dict[str, float] = {
        **best_us({"dedup_us_plain": dedup_plain, "dedup_us_stamped": dedup_stamped}, args.repeat),
        **best_us({"sink_us_plain": sink(older), "sink_us_stamped": sink(stamped)}, args.repeat),
        # what a stamped record costs the sink on its Python path (a C builder that did not know the stamps)
        **best_us({"sink_us_python_path": sink(stamped, c=False)}, max(1, args.repeat // 3)),
        "bytes_plain": sum(map(len, older)) / len(older),
        "bytes_stamped": sum(map(len, stamped)) / len(stamped),
    }
    for name, value in figures.items():
        print(json.dumps({"figure": name, "value": round(value, 3)}), flush=True)
    dedup_cost = figures["dedup_us_stamped"] - figures["dedup_us_plain"]
    sink_cost = figures["sink_us_stamped"] - figures["sink_us_plain"]
    result = {
        "bench": "e2e-stamps",
        "value": round(dedup_cost + sink_cost, 3),
        "unit": "us CPU per event for the hop stamps (dedup + sink)",
        "baseline": round(figures["dedup_us_plain"] + figures["sink_us_plain"], 3),
        "baseline_unit": "us per event of the same dedup normalise+encode and sink row build without stamps",
        "ratio": round((dedup_cost + sink_cost) / (figures["dedup_us_plain"] + figures["sink_us_plain"]), 4),
        "runs": args.repeat,
        "events": len(won),
        "c_row_builder": fast is not None,
        "dedup_us": round(dedup_cost, 3),
        "sink_us": round(sink_cost, 3),
        "extra_bytes_per_event": round(figures["bytes_stamped"] - figures["bytes_plain"], 1),
        **{k: round(v, 3) for k, v in figures.items()},
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
