"""`python -m bench.sink.paced`: the sink at a moderate, paced rate — latency and CPU of each settings variant.

The stage benchmark (``make bench-sink``) drains a full topic, where batching amortises every fixed cost; in the
pipeline the sink reads a live topic at 5,000-10,000 events/s, where per-fetch, per-wake-up and per-commit costs
dominate. Here, per settings variant and rate: a fresh topic set and database, ``mdpipe sink`` started (hop trace
on), then a producer writes the events topic at ``rate`` events/s for ``--duration`` s (a 20-ms linger,
``LINGER_MS``). Measured over the paced window after ``--warmup`` s:

- latency per event: ``events`` append (the record's LogAppendTime, ms) -> the sink's consume() returned it
  (``read``) and -> its transaction committed (``commit``), from the sink's hop trace (:mod:`sink.trace`);
  p50/p99/max in ms;
- CPU (``/proc``, :mod:`ops.cpu`) of the sink process, PostgreSQL (postmaster and backends) and the broker,
  as share of a core and µs per event; ``other`` = the machine's remaining busy time (disturbance);
- batches committed per second (trace entries' distinct commit times).

``--lifecycle-rows N`` starts every case's database with N ``market_lifecycle`` rows of earlier events (vacuumed and
analysed, as autovacuum leaves a table), spread over the bench's markets and as many others: a sink that has run for
weeks, whose lifecycle lookups meet a grown table (1 % of the bench's events are lifecycle records, so nearly every
batch holds one).

``--variant NAME:KEY=VALUE,KEY=VALUE`` (repeatable) sets ``MDPIPE_SINK__<KEY>`` for the sink (e.g.
``fmb:FETCH_MIN_BYTES=65536,FETCH_WAIT_MAX_MS=25``; ``TREE=DIR`` runs the sink of another source tree, e.g. an
older commit); ``--sink-tree`` runs another source tree's sink for every variant. Variants run
interleaved per repetition (``--reps``); the last line is RESULT {json} with the medians per variant and rate.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from bench.sink.__main__ import Databases
from bench.sink.data import VENUE, make_events
from mdpipe.config import Config, load_config
from ops.cpu import cpu_rows, sample
from schemas import encode_event

LINGER_MS = 20  # the Faust engine's output linger (dedup_stream.app.LINGER_S); the native engine's is dedup.linger_ms
STAGES = ("sink", "postgres", "broker")
MARKETS = 2000  # markets the paced events are spread over (and the prefilled lifecycle rows, on as many again)


def _fresh_topics(base: Config) -> Config:
    from mdpipe.topics import PartitionMismatchError, ensure_topics

    prefix = f"bench-paced-{uuid.uuid4().hex[:8]}."
    config = msgspec.structs.replace(base, kafka=msgspec.structs.replace(base.kafka, topic_prefix=prefix))
    for attempt in range(5):
        try:
            ensure_topics(config)
            return config
        except PartitionMismatchError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    return config


def _start_sink(config: Config, dsn: str, env_extra: dict[str, str], work: Path, tree: Path | None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    env.update(
        MDPIPE_KAFKA__BOOTSTRAP_SERVERS=config.kafka.bootstrap_servers,
        MDPIPE_KAFKA__TOPIC_PREFIX=config.kafka.topic_prefix,
        MDPIPE_KAFKA__PARTITIONS=str(config.kafka.partitions),
        MDPIPE_POSTGRES__DSN=dsn,
        MDPIPE_RUN_DIR=str(work),
        MDPIPE_SINK__HOP_TRACE=str(work / "trace"),
        MDPIPE_SINK__LOAD_MARKETS="false",
        **{f"MDPIPE_SINK__{k}": v for k, v in env_extra.items()},
    )
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    log = open(work / "sink.log", "wb")  # noqa: SIM115 - closed when the process ends
    cmd = [sys.executable, "-m", "mdpipe", "sink", "--group", f"paced-{uuid.uuid4().hex[:6]}", "--no-migrate"]
    proc = subprocess.Popen([*cmd, "--metrics-port", "0"], env=env, stdout=log, stderr=log, cwd=tree)
    deadline = time.monotonic() + 60
    while b"partitions_assigned" not in (work / "sink.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sink did not start: {(work / 'sink.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def prefill_lifecycle(dsn: str, rows: int, markets: int) -> None:
    """``rows`` lifecycle rows of earlier events (keys of their own) on the bench's ``markets`` markets and as many
    others, then VACUUM ANALYZE (as autovacuum leaves a table)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market_lifecycle (ts, market, event_key, gatherer, received_at, event_type, venue, keys)"
            " SELECT to_timestamp(1.6e9 + i), format('KXM-%%s', lpad((i %% (2 * %(m)s))::text, 6, '0')),"
            " 'earlier:' || i, 'g1', to_timestamp(1.6e9 + i), 'created', %(venue)s, ARRAY['earlier:' || i]"
            " FROM generate_series(1, %(n)s) AS i",
            {"m": markets, "n": rows, "venue": VENUE},
        )
        conn.execute("VACUUM ANALYZE market_lifecycle")


def one_case(
    base: Config,
    dbs: Databases,
    payloads: list[bytes],
    keys: list[bytes],
    rate: float,
    duration_s: float,
    warmup_s: float,
    env_extra: dict[str, str],
    tree: Path | None,
    profile: Path | None = None,
    lifecycle_rows: int = 0,
) -> dict[str, Any]:
    from confluent_kafka import Producer

    from mdpipe.kafka import kafka_client_config, producer_config
    from mdpipe.topics import topic_names
    from ops.hops_read import _read_topic
    from ops.pipeline_run import _infra_pids
    from sink.trace import read_trace

    config = _fresh_topics(base)
    topic = topic_names(config).events
    work = Path(tempfile.mkdtemp(prefix="bench-paced-"))
    dsn = dbs.fresh()
    if lifecycle_rows:
        prefill_lifecycle(dsn, lifecycle_rows, MARKETS)
    proc = _start_sink(config, dsn, env_extra, work, tree)
    pids = {"sink": proc.pid, **_infra_pids()}
    spy = None
    if profile is not None:  # py-spy samples without stopping the sink (--nonblocking); its CPU is its own
        spy_bin = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen(
            [str(spy_bin), "record", "--nonblocking", "--threads", "--pid", str(proc.pid), "--duration",
             str(int(duration_s)), "--rate", "200", "--format", "raw" if profile.suffix == ".txt" else "flamegraph",
             "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    producer = Producer(producer_config(config.kafka, linger_ms=LINGER_MS))
    n = int(rate * duration_s)
    started = time.monotonic()
    sent = 0
    marks: dict[str, Any] = {}
    window_first = int(rate * warmup_s)
    try:
        while sent < n:
            now = time.monotonic()
            due = min(n, int((now - started) * rate))
            if sent <= window_first <= due and "start" not in marks:
                marks["start"] = sample(pids, time.time_ns(), window_first)
            for i in range(sent, due):
                producer.produce(topic, key=keys[i], value=payloads[i])
            sent = due
            producer.poll(0)
            time.sleep(0.002)
        marks["end"] = sample(pids, time.time_ns(), n)
        producer.flush(30)
        deadline = time.monotonic() + 60
        while True:  # until the sink committed everything (its trace covers every offset)
            done = sum(e.last_offset - e.first_offset + 1 for e in read_trace(work / "trace"))
            if done >= n or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        if spy is not None:
            spy.wait(60)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    entries = list(read_trace(work / "trace"))
    appended = {(p, off): ts for p, off, ts, _ in _read_topic(kafka_client_config(config.kafka), topic, 30)}
    _drop_topics(config)
    read_at: dict[tuple[int, int], tuple[int, int]] = {}
    for e in entries:
        for off in range(e.first_offset, e.last_offset + 1):
            read_at[(e.partition, off)] = (e.read_ns, e.commit_ns)
    window_start_ms = marks["start"].at_ns // 1_000_000
    window_end_ms = marks["end"].at_ns // 1_000_000
    to_read, to_commit = [], []
    for key, ts in appended.items():
        if not window_start_ms <= ts <= window_end_ms or key not in read_at:
            continue
        read_ns, commit_ns = read_at[key]
        to_read.append(read_ns / 1e6 - ts)
        to_commit.append(commit_ns / 1e6 - ts)
    cpu = cpu_rows(marks["start"], marks["end"])
    commits = {e.commit_ns for e in entries if window_start_ms * 1e6 <= e.commit_ns <= window_end_ms * 1e6}
    window_s = (window_end_ms - window_start_ms) / 1000
    missing = n - len({k for k in appended if k in read_at})
    return {
        "events": n,
        "uncommitted": missing,
        "read_ms": _pcts(to_read),
        "commit_ms": _pcts(to_commit),
        "batches_per_s": round(len(commits) / window_s, 1) if window_s > 0 else None,
        "cpu": {k: v for k, v in cpu.items() if k in ("sink", "postgres", "broker", "other")},
        "stages_us_per_event": round(sum(cpu[k]["us_per_event"] or 0.0 for k in STAGES if k in cpu), 1),
    }  # fmt: skip


def _drop_topics(config: Config) -> None:
    from confluent_kafka.admin import AdminClient

    from mdpipe.kafka import kafka_client_config

    admin = AdminClient(kafka_client_config(config.kafka))
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(config.kafka.topic_prefix)]
    if mine:
        for fut in admin.delete_topics(mine, operation_timeout=30).values():
            try:
                fut.result()
            except Exception as exc:
                print(f"cleanup: {exc}", file=sys.stderr)


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    values.sort()
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 1)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(values[-1], 1), "n": len(values)}


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    pairs = [kv.split("=", 1) for kv in rest.split(",") if kv]
    return name, {k.upper(): v for k, v in pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink.paced", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="5000,10000", help="events/s, comma-separated (5000,10000)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of production per case (15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out of the figures (3)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every case (medians reported)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,... (MDPIPE_SINK__KEY)")
    parser.add_argument("--sink-tree", type=Path, help="run the sink of this source tree (all variants)")
    parser.add_argument(
        "--lifecycle-rows", type=int, default=0,
        help="market_lifecycle rows each case's database starts with (a sink that has run for weeks; default 0)",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="py-spy the first case's sink to this file (.txt: raw)")
    args = parser.parse_args(argv)
    variants = [_variant(v) for v in args.variant] or [("config", {})]
    rates = [float(r) for r in args.rates.split(",")]
    base = load_config()
    # every event distinct (a repeated event key is a duplicate row: the sink's staging path, not its common one)
    events = make_events(int(max(rates) * args.duration) + 1, markets=MARKETS, seed=3)
    payloads = [encode_event(e) for e in events]
    keys = [e.market.encode() for e in events]
    dbs = Databases(base.postgres.dsn, msgspec.structs.replace(base.postgres, timescaledb="auto"))
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for rep in range(args.reps):
            for rate in rates:
                for name, env_extra in variants:
                    settings = dict(env_extra)
                    tree = Path(settings.pop("TREE")) if "TREE" in settings else args.sink_tree
                    profile, args.profile = args.profile, None
                    out = one_case(
                        base, dbs, payloads, keys, rate, args.duration, args.warmup, settings, tree, profile,
                        args.lifecycle_rows,
                    )  # fmt: skip
                    out.update(variant=name, rate=rate, rep=rep, load=os.getloadavg()[0])
                    print(json.dumps(out), flush=True)
                    results.setdefault(f"{name}@{int(rate)}", []).append(out)
                    dbs.drop_all()
    finally:
        dbs.drop_all()
    summary = {}
    for case, outs in results.items():

        def med(f: Any, outs: list[dict[str, Any]] = outs) -> float:
            return statistics.median(f(o) for o in outs)

        summary[case] = {
            "commit_p50_ms": med(lambda o: o["commit_ms"]["p50"]),
            "commit_p99_ms": med(lambda o: o["commit_ms"]["p99"]),
            "read_p99_ms": med(lambda o: o["read_ms"]["p99"]),
            "sink_core": med(lambda o: o["cpu"]["sink"]["core_share"]),
            "postgres_core": med(lambda o: o["cpu"].get("postgres", {}).get("core_share") or 0.0),
            "broker_core": med(lambda o: o["cpu"].get("broker", {}).get("core_share") or 0.0),
            "us_per_event": med(lambda o: o["stages_us_per_event"]),
            "batches_per_s": med(lambda o: o["batches_per_s"]),
        }
    print(
        "RESULT "
        + json.dumps(
            {"bench": "sink-paced", "reps": args.reps, "lifecycle_rows": args.lifecycle_rows, "cases": summary}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
