"""The broker's CPU for the gatherers' produce pattern, one partition per request against all partitions in one.

Each gatherer hands its producer one release per read window (``gather.read_window_ms``) holding frames for every
raw partition. librdkafka (the pipeline's client) sends one ProduceRequest per partition, and the broker's cost is
per request (docs/perf-broker.md); aiokafka sends one request per broker carrying every partition that has a batch
ready. This drives ``--producers`` processes (one per gatherer), each ``--rate`` records a second in releases every
``--window-ms`` over ``--partitions`` partitions of its own topic, with librdkafka (``rd``, the baseline), with
aiokafka through its batch API (``aio``: ``create_batch``/``send_batch``, one builder per partition and release) and
with aiokafka's per-record ``send`` (``aio-send``), each first in turn for ``--rounds`` rounds, and
reports the broker's and the producers' CPU per record (medians) and the produce requests each client sent per
release (librdkafka's statistics; aiokafka's sender counted). Both clients: acks=all, idempotence, no compression
(aiokafka would need the ``lz4`` package for the pipeline's lz4), a 1-ms linger, the same record bodies.

The broker's CPU is taken over each run (the producers' start included) less what the idle broker uses over the
same time (the lower of two ``--idle-s`` samples, before the first run and after the last; its background work comes
in bursts); anything else using the broker meanwhile counts too.
It needs the broker started by ``mdpipe infra up`` at the configured address (its process id comes from
``.run/infra.json``); for any other broker the broker's figures are null.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.dedup.paced import ProcCpu, broker_pid
from mdpipe.config import load_config

MODES = ("rd", "aio", "aio-send")  # librdkafka; aiokafka batch API; aiokafka per-record send()


def bodies(n: int = 4096) -> list[bytes]:
    """Frame-sized records (~300 bytes of a venue's book-delta JSON), all different."""
    out = []
    for i in range(n):
        msg = {
            "market_ticker": f"KXBENCH-E{i % 50}-M{i % 500}",
            "price_dollars": f"0.{10 + i % 89}",
            "delta_fp": f"{i % 101 - 50}.00",
            "side": "yes" if i % 2 else "no",
            "ts": 1_796_000_000_000 + i,
        }
        out.append(json.dumps({"type": "orderbook_delta", "sid": 1, "seq": i, "msg": msg}).encode() + b" " * 80)
    return out  # fmt: skip


def produce_rd(
    bootstrap: str, topic: str, partitions: int, per_release: int, window_s: float, duration_s: float
) -> tuple[int, float, int]:
    """(records, producer CPU seconds, produce requests sent)."""
    from confluent_kafka import Producer

    stats: list[dict[str, Any]] = []
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True, "acks": "all"}
    conf |= {"statistics.interval.ms": 500, "stats_cb": lambda raw: stats.append(json.loads(raw))}
    producer = Producer({**conf, "compression.type": "none"})
    values, k, n = bodies(), 0, 0
    t0, cpu0 = time.monotonic(), time.process_time()
    while time.monotonic() - t0 < duration_s:
        for _ in range(per_release):
            producer.produce(topic, values[k % len(values)], partition=k % partitions)
            k += 1
        producer.poll(0)
        n += 1
        time.sleep(max(0.0, t0 + n * window_s - time.monotonic()))
    if producer.flush(30):
        raise RuntimeError("librdkafka producer did not deliver everything in 30 s")
    cpu = time.process_time() - cpu0
    seen = len(stats)
    while len(stats) < seen + 2:  # statistics taken after the last delivery
        producer.poll(0.1)
    requests = sum(b.get("req", {}).get("Produce", 0) for b in stats[-1]["brokers"].values())
    return k, cpu, requests


async def produce_aio(
    bootstrap: str, topic: str, partitions: int, per_release: int, window_s: float, duration_s: float, per_record: bool
) -> tuple[int, float, int]:
    """(records, producer CPU seconds, produce requests sent); ``per_record``: each record through ``send()`` (what
    an ordinary aiokafka client, Faust's included, does) instead of a batch builder per partition."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer import sender

    requests = 0
    create_request = sender.SendProduceReqHandler.create_request

    def counted(handler: Any) -> Any:  # aiokafka's sender builds one of these per ProduceRequest
        nonlocal requests
        requests += 1
        return create_request(handler)

    sender.SendProduceReqHandler.create_request = counted  # type: ignore[method-assign]

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=1, enable_idempotence=True, acks="all", max_batch_size=1 << 20
    )
    await producer.start()
    values, k, n = bodies(), 0, 0
    t0, cpu0 = time.monotonic(), time.process_time()
    try:
        while time.monotonic() - t0 < duration_s:
            if per_record:
                for _ in range(per_release):
                    await producer.send(topic, values[k % len(values)], partition=k % partitions)
                    k += 1
                n += 1
                await asyncio.sleep(max(0.0, t0 + n * window_s - time.monotonic()))
                continue
            batches = [producer.create_batch() for _ in range(partitions)]
            for _ in range(per_release):
                batches[k % partitions].append(key=None, value=values[k % len(values)], timestamp=None)
                k += 1
            for partition, batch in enumerate(batches):
                await producer.send_batch(batch, topic, partition=partition)
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * window_s - time.monotonic()))
        await producer.flush()
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    return k, cpu, requests


def worker(argv: list[str]) -> int:
    """One producer process: prints ``{"records": N, "cpu_s": S, "requests": R, "releases": L}``, S its CPU (every
    thread) from its first release to the end of its flush (imports and connecting left out)."""
    mode, bootstrap, topic = argv[0], argv[1], argv[2]
    partitions, rate, window_ms, duration_s = int(argv[3]), float(argv[4]), float(argv[5]), float(argv[6])
    per_release, window_s = max(1, round(rate * window_ms / 1000)), window_ms / 1000
    if mode == "rd":
        records, cpu_s, requests = produce_rd(bootstrap, topic, partitions, per_release, window_s, duration_s)
    else:
        run = produce_aio(bootstrap, topic, partitions, per_release, window_s, duration_s, mode == "aio-send")
        records, cpu_s, requests = asyncio.run(run)
    print(json.dumps({"records": records, "cpu_s": cpu_s, "requests": requests, "releases": records // per_release}))
    return 0


def local_broker(bootstrap: str) -> ProcCpu | None:
    """The broker ``mdpipe infra up`` started, when it is the one at ``bootstrap``."""
    from mdpipe.config import run_dir

    try:
        infra = json.loads((run_dir() / "infra.json").read_text())
    except (OSError, ValueError):
        return None
    pid = broker_pid()
    return ProcCpu(pid) if pid is not None and infra.get("bootstrap_servers") == bootstrap else None


def idle_rate(broker: ProcCpu | None, seconds: float) -> float:
    """CPU seconds a second the broker uses with nothing sent to it by this benchmark."""
    if broker is None or seconds <= 0:
        return 0.0
    b0, t0 = broker.total(), time.monotonic()
    time.sleep(seconds)
    return (broker.total() - b0) / (time.monotonic() - t0)


def one_run(
    mode: str, bootstrap: str, topics: list[str], args: argparse.Namespace, broker: ProcCpu | None
) -> dict[str, Any]:
    """Every producer of ``mode`` at once; CPU of the broker over the run (its idle use still in: :func:`net_of_idle`)
    and of the producers; produce requests per release."""
    b0, t0 = broker.total() if broker else 0.0, time.monotonic()
    cmd = [sys.executable, "-m", "bench.broker.produce_requests", "--worker", mode, bootstrap]
    params = [str(args.partitions), str(args.rate), str(args.window_ms), str(args.duration)]
    procs = [subprocess.Popen([*cmd, t, *params], stdout=subprocess.PIPE, text=True) for t in topics]
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.duration + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} producer exited with {proc.returncode}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    records = sum(o["records"] for o in outs)
    client = sum(o["cpu_s"] for o in outs)
    return {
        "mode": mode,
        "records": records,
        "wall_s": round(time.monotonic() - t0, 2),
        "requests_per_release": round(sum(o["requests"] for o in outs) / sum(o["releases"] for o in outs), 2),
        "broker_total_cpu_s": round(broker.total() - b0, 2) if broker else None,
        "client_cpu_s": round(client, 2),
        "client_us_per_record": round(client / records * 1e6, 2),
        "load": round(os.getloadavg()[0], 2),
    }


def net_of_idle(run: dict[str, Any], idle: float) -> None:
    """Add to ``run`` the broker's CPU less what the idle broker (``idle`` CPU seconds a second) used meanwhile."""
    total = run["broker_total_cpu_s"]
    run["idle_cpu_s"] = round(idle * run["wall_s"], 2)
    run["broker_cpu_s"] = None if total is None else round(total - run["idle_cpu_s"], 2)
    run["broker_us_per_record"] = None if total is None else round(run["broker_cpu_s"] / run["records"] * 1e6, 2)


def end_offsets(bootstrap: str, topics: list[str], partitions: int) -> list[int]:
    """Records stored in each partition number, summed over ``topics``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-broker-{uuid.uuid4().hex[:6]}"})
    try:
        return [sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for t in topics)
                for p in range(partitions)]  # fmt: skip
    finally:
        consumer.close()


def median_of(runs: list[dict[str, Any]], mode: str, field: str) -> float | None:
    values = [r[field] for r in runs if r["mode"] == mode and r[field] is not None]
    return round(statistics.median(values), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.broker.produce_requests", description=__doc__.split("\n")[0])
    parser.add_argument("--producers", type=int, default=3, help="producer processes, one per gatherer (default 3)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="records a second per producer (default 10,000)")
    parser.add_argument("--window-ms", type=float, default=40.0, help="one release every this many ms (default 40)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of each producer's topic (default 6)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of each run (default 30)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of one run per client, each client first in turn (default 3)"
    )
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of each idle broker sample (default 10)")
    args = parser.parse_args(argv)

    bootstrap = load_config().kafka.bootstrap_servers
    if not bootstrap:
        print("bench-broker: no broker (run `make up`)", file=sys.stderr)
        return 2
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    prefix = f"bench-broker-{uuid.uuid4().hex[:8]}."
    topics = {m: [f"{prefix}{m}.{i}" for i in range(args.producers)] for m in MODES}
    names = [t for ts in topics.values() for t in ts]
    for fut in admin.create_topics([NewTopic(t, args.partitions, 1) for t in names]).values():
        fut.result()
    runs: list[dict[str, Any]] = []
    broker = local_broker(bootstrap)
    time.sleep(2.0)  # the topics' creation settles (the broker's work for it is not idle)
    before = idle_rate(broker, args.idle_s)
    try:
        for r in range(args.rounds):
            k = r % len(MODES)
            for mode in MODES[k:] + MODES[:k]:  # each client first in turn
                runs.append(one_run(mode, bootstrap, topics[mode], args, broker))
                print(json.dumps(runs[-1]), flush=True)
        stored = {m: end_offsets(bootstrap, topics[m], args.partitions) for m in MODES}
        # the lower of two samples: a burst of the broker's own background work only adds
        idle = min(before, idle_rate(broker, args.idle_s))
    finally:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result()
    for run in runs:
        net_of_idle(run, idle)
    per_record = {m: median_of(runs, m, "broker_us_per_record") for m in MODES}
    base, new = per_record["rd"], per_record["aio"]
    result = {
        "bench": "broker-produce-requests",
        "value": new,
        "unit": "broker CPU us per record, all partitions in one request (aiokafka; median)",
        "baseline": base,
        "baseline_unit": "broker CPU us per record, one partition per request (librdkafka; median)",
        "ratio": round(new / base, 3) if new and base else None,
        "broker_us_per_record": per_record,
        "client_us_per_record": {m: median_of(runs, m, "client_us_per_record") for m in MODES},
        "requests_per_release": {m: median_of(runs, m, "requests_per_release") for m in MODES},
        "broker_idle_cpu_s_per_s": round(idle, 4) if broker else None,
        "records": {m: sum(r["records"] for r in runs if r["mode"] == m) for m in MODES},
        "stored": stored,
        "producers": args.producers, "rate": args.rate, "window_ms": args.window_ms,
        "partitions": args.partitions, "duration_s": args.duration, "rounds": args.rounds,
        "runs": runs,
    }  # fmt: skip
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
