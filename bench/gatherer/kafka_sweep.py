"""The gatherer's producer settings priced alone: ``python -m bench.gatherer.kafka_sweep`` (needs the broker).

Produces gatherer-like frames (``--size`` bytes, keyed by one of ``--markets`` tickers, into a fresh topic of
``--partitions`` partitions) at ``--rate`` frames/s in bursts of ``rate / --reads`` frames (the gatherer hands
frames over at the end of each socket read, ~200 reads/s at these rates), through :class:`ingest.producer.RawProducer`
as the gatherer uses it, for each setting in turn (``--linger``, ``--compression``, ``--batch``: frames handed over
per read as they come (``read``) or held and released once per linger window (``held``)), and reports per setting
the CPU per frame of the process split into the calling thread and librdkafka's threads, librdkafka's wake-ups per
second and the median produce->ack latency. Each setting runs in a fresh process, ``--runs`` times, alternating.
Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _one(a: dict[str, Any]) -> dict[str, Any]:
    """One setting in this process: warm up, then measure."""
    from bench.gatherer.cases import _cpu, _thread_cpu
    from ingest.producer import RawProducer
    from ingest.spool import Spool
    from mdpipe.config import KafkaConfig
    from mdpipe.kafka import producer_config

    kafka = KafkaConfig(bootstrap_servers=a["bootstrap"], compression=a["compression"])
    conf = producer_config(kafka, linger_ms=a["kafka_linger_ms"], batch_num_messages=10000)
    with tempfile.TemporaryDirectory() as spool_dir:
        # the quiet producer from the first frame: `--batch read` hands frames over with send(), and the switch from
        # the warm-up's reporting producer happens only in release(); the sweep prices the steady path either way
        producer = RawProducer(conf, Spool(Path(spool_dir), 1 << 30), warm_topics={})
        keys = [f"KXBENCH-{i:05d}".encode() for i in range(a["markets"])]
        value = os.urandom(a["size"] // 2).hex().encode()[: a["size"]]
        per_read = max(1, round(a["rate"] / a["reads"]))
        interval = per_read / a["rate"]
        held = a["batch"] == "held"
        window = a["linger_ms"] / 1000
        topic = a["topic"]
        key_cycle = itertools.cycle(keys)
        next_t = time.monotonic()
        held_since = 0.0
        measuring = False
        t_end = next_t + a["warmup_s"] + a["seconds"]
        t_measure = next_t + a["warmup_s"]
        while True:
            now = time.monotonic()
            if not measuring and now >= t_measure:
                measuring = True
                sent0, cpu0, threads0, t0 = producer.sent, _cpu(), _thread_cpu(), now
                producer.latency_samples.clear()
            if now >= t_end:
                break
            for _ in range(per_read):
                if held:
                    producer.held.append((topic, next(key_cycle), value))
                else:
                    producer.send(topic, next(key_cycle), value)
            if held:
                if not held_since:
                    held_since = now
                if now - held_since >= window:
                    producer.release()
                    held_since = 0.0
            else:
                producer.service()  # the gatherer serves delivery reports at the end of each read
            next_t += interval
            time.sleep(max(0.0, next_t - time.monotonic()))
        t1, cpu1, threads1, sent = time.monotonic(), _cpu(), _thread_cpu(), producer.sent - sent0
        latency = statistics.median(producer.latency_samples) if producer.latency_samples else None
        producer.close(10.0)
    seconds = t1 - t0
    rdk = sum(v - threads0.get(n, 0.0) for n, v in threads1.items() if n.startswith("rdk:") and "/" not in n)
    rdk_wakeups = sum(v - threads0.get(n, 0) for n, v in threads1.items() if n.startswith("rdk:") and "/" in n)
    main = threads1.get("main", 0.0) - threads0.get("main", 0.0)
    return {
        "frames": sent,
        "seconds": round(seconds, 3),
        "cpu_us_per_frame": round(1e6 * (cpu1 - cpu0) / max(1, sent), 2),
        "main_us_per_frame": round(1e6 * main / max(1, sent), 2),
        "rdk_us_per_frame": round(1e6 * rdk / max(1, sent), 2),
        "rdk_wakeups_per_s": round(rdk_wakeups / seconds),
        "ack_latency_ms_p50": round(1000 * latency, 2) if latency is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one":
        print(json.dumps(_one(json.loads(argv[1]))), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.gatherer.kafka_sweep", description=__doc__)
    p.add_argument("--rate", type=float, default=5000.0, help="frames/s")
    p.add_argument("--reads", type=float, default=200.0, help="bursts (socket reads) per second")
    p.add_argument("--size", type=int, default=330, help="bytes per frame")
    p.add_argument("--markets", type=int, default=2000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--linger", default="5", help="linger values, ms, comma-separated")
    p.add_argument("--compression", default="lz4", help="compression types, comma-separated")
    p.add_argument("--batch", default="read", help="read,held")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--warmup", type=float, default=2.0)
    ns = p.parse_args(argv)
    from confluent_kafka.admin import AdminClient, NewTopic

    from bench.gatherer.__main__ import _bootstrap

    bootstrap = _bootstrap()
    topic = f"bench.{uuid.uuid4().hex[:8]}.sweep"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, ns.partitions, 1)]).values():
        fut.result()
    settings = [
        {"linger_ms": float(linger), "compression": comp, "batch": batch}
        for linger in ns.linger.split(",")
        for comp in ns.compression.split(",")
        for batch in ns.batch.split(",")
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for _run in range(ns.runs):
            for s in settings:
                name = f"linger={s['linger_ms']:g} compression={s['compression']} batch={s['batch']}"
                args = {
                    **s,
                    # held frames go to librdkafka once per window: its own linger only gathers that burst
                    "kafka_linger_ms": 1 if s["batch"] == "held" else s["linger_ms"],
                    "bootstrap": bootstrap,
                    "topic": topic,
                    "rate": ns.rate,
                    "reads": ns.reads,
                    "size": ns.size,
                    "markets": ns.markets,
                    "seconds": ns.seconds,
                    "warmup_s": ns.warmup,
                }
                load0 = os.getloadavg()[0]
                out = subprocess.run(
                    [sys.executable, "-m", "bench.gatherer.kafka_sweep", "--one", json.dumps(args)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                results.setdefault(name, []).append(r)
                print(f"{name}: {json.dumps(r)}", flush=True)
    finally:
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            fut.exception()
    summary = {
        name: {
            key: round(statistics.median(r[key] for r in rs), 2)
            for key in ("cpu_us_per_frame", "main_us_per_frame", "rdk_us_per_frame", "rdk_wakeups_per_s")
        }
        | {"ack_latency_ms_p50": statistics.median(r["ack_latency_ms_p50"] or 0 for r in rs)}
        for name, rs in results.items()
    }
    print("RESULT " + json.dumps({"bench": "gatherer-kafka-sweep", "rate": ns.rate, "settings": summary}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
