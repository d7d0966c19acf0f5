"""`make bench-sink`: the ``events`` topic pre-filled with N events; the sink (`mdpipe sink --exit-when-idle`, a
fresh group and a fresh database per run) drains it. Baseline in the same run: a binary COPY of the same rows,
already encoded in memory, into the same (freshly migrated) tables, in transactions of the same batch size.

value = rows / (last commit - first record consumed), as the sink measures it (group join and the idle wait
before exit are excluded; ``wall_s`` gives the whole run). The sink writes through ``sink.writers`` connections
(``--writers``); ``baseline`` is the issue's single-connection COPY, and ``baseline_same_writers_rows_s`` the
same COPY from memory split over as many connections as the sink uses (``ratio_same_writers`` compares with that).
``rows_per_cpu_s``: rows per CPU-second of the whole
sink process (start-up included); ``busy_rows_per_cpu_s``: the same over the busy interval only. Extras,
interleaved with each run (medians): the staging path (temp table + INSERT ... ON CONFLICT DO NOTHING) and
``loaded_at`` sent in the COPY data instead of left to its DEFAULT clock_timestamp(). The databases of those
loads are dropped before the sink runs (their autovacuum would compete with it for the CPU).
Prints per-run figures; the last line is RESULT {json} with medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.sink.baseline import encode_batches, load_from_memory, load_in_parallel
from bench.sink.data import make_events
from mdpipe.config import Config, PostgresConfig, load_config
from schemas import encode_event


def _dsn_for(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


class Databases:
    def __init__(self, dsn: str, pg: PostgresConfig) -> None:
        self.admin = _dsn_for(dsn, "postgres")
        self.pg = pg
        self.made: list[str] = []

    def fresh(self) -> str:
        from sink.migrate import migrate

        name = f"bench_sink_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        dsn = _dsn_for(self.admin, name)
        migrate(dsn, self.pg)
        return dsn

    def drop_all(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.made.clear()


def produce(config: Config, topic: str, events: list, payloads: list[bytes]) -> None:
    from confluent_kafka import Producer

    from mdpipe.kafka import producer_config

    producer = Producer(producer_config(config.kafka, linger_ms=20, queue_buffering_max_messages=2_000_000))
    for ev, payload in zip(events, payloads, strict=True):
        producer.produce(topic, key=ev.market.encode(), value=payload)
        if len(producer) > 200_000:
            producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError("could not pre-fill the events topic")


def run_sink(
    config: Config,
    dsn: str,
    group: str,
    batch_rows: int,
    workdir: Path,
    helper_share: float | None = None,
    writers: int | None = None,
    tree: Path | None = None,
) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    env.update(
        MDPIPE_KAFKA__BOOTSTRAP_SERVERS=config.kafka.bootstrap_servers,
        MDPIPE_KAFKA__TOPIC_PREFIX=config.kafka.topic_prefix,
        MDPIPE_KAFKA__PARTITIONS=str(config.kafka.partitions),
        MDPIPE_POSTGRES__DSN=dsn,
        MDPIPE_RUN_DIR=str(workdir),
    )
    if helper_share is not None:
        env["MDPIPE_SINK__HELPER_SHARE"] = str(helper_share)
    if writers is not None:
        env["MDPIPE_SINK__WRITERS"] = str(writers)
    cmd = [sys.executable, "-m", "mdpipe", "sink", "--group", group, "--batch-rows", str(batch_rows)]
    cmd += ["--exit-when-idle", "--no-migrate", "--metrics-port", "0"]
    if tree is not None:  # another source tree's sink (its own built sink._rowcodec) under the same benchmark
        env["PYTHONPATH"] = str(tree)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tree)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop = [line for line in proc.stderr.splitlines() if "event=sink_stopped" in line]
    if proc.returncode != 0 or not stop:
        raise RuntimeError(f"sink failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    fields = dict(re.findall(r"(\w+)=([\d.]+)(?=\s|$)", stop[-1]))
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"rows": float(fields["rows"]), "busy_s": float(fields["busy_s"]), "wall_s": wall, "cpu_s": cpu,
            "busy_cpu_s": float(fields["busy_cpu_s"]), "duplicates": float(fields["duplicates"])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--events", type=int, default=300_000, help="events pre-filled into the topic")
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (medians are reported)")
    parser.add_argument("--markets", type=int, default=5000, help="distinct markets")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="sink batch size (and baseline transaction)")
    parser.add_argument(
        "--helper-share", type=float, help="sink.helper_share for the sink (default: the configuration's; 0 = off)"
    )
    parser.add_argument("--writers", type=int, help="sink.writers for the sink (default: the configuration's)")
    parser.add_argument(
        "--database",
        metavar="NAME",
        help="load into this existing database (e.g. one holding history: bench.sink.history) instead of fresh "
        "ones: the baseline COPY and the sink run each load the events into it and the rows they added are deleted "
        "(and vacuumed) after each; the staging/explicit_loaded_at extras are skipped",
    )
    parser.add_argument(
        "--sink-tree",
        type=Path,
        metavar="DIR",
        help="also run, in each run right after this tree's sink, the sink of source tree DIR (e.g. an older "
        "commit with its sink._rowcodec built in place): `tree_*` figures and `ratio_to_tree` in RESULT",
    )
    args = parser.parse_args(argv)

    base = load_config()
    writers = args.writers or base.sink.writers
    if not base.kafka.bootstrap_servers or not base.postgres.dsn:
        print("bench-sink: no broker/database (run `make up`)", file=sys.stderr)
        return 2
    from confluent_kafka.admin import AdminClient

    from mdpipe.kafka import kafka_client_config
    from mdpipe.topics import PartitionMismatchError, ensure_topics, topic_names

    prefix = f"bench-sink-{uuid.uuid4().hex[:8]}."
    config = msgspec.structs.replace(base, kafka=msgspec.structs.replace(base.kafka, topic_prefix=prefix))
    for attempt in range(5):  # ensure_topics' own check can race the broker's metadata right after creation
        try:
            ensure_topics(config)
            break
        except PartitionMismatchError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    dbs = Databases(base.postgres.dsn, msgspec.structs.replace(base.postgres, timescaledb="auto"))
    admin = AdminClient(kafka_client_config(config.kafka))
    tmp = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    try:
        t = time.perf_counter()
        events = make_events(args.events, markets=args.markets, seed=1)
        payloads = [encode_event(e) for e in events]
        produce(config, topic_names(config).events, events, payloads)
        batches = encode_batches(payloads, args.batch_rows)
        print(f"prefilled {len(events)} events in {time.perf_counter() - t:.1f}s", flush=True)
        base_rates, rates, cpu_rates, busy_cpu_rates, walls = [], [], [], [], []
        variants: dict[str, list[float]] = {"staging": [], "explicit_loaded_at": []}
        same_writers: list[float] = []
        if args.database:
            return _run_into(config, dbs, args, events, batches, tmp, writers)
        tree_rates: list[float] = []
        tree_busy_cpu: list[float] = []
        for run in range(args.runs):
            rows, secs = load_from_memory(dbs.fresh(), batches, "direct")
            base_rates.append(rows / secs)
            if writers > 1:
                rows, secs = load_in_parallel(dbs.fresh(), batches, writers)
                same_writers.append(rows / secs)
            else:
                same_writers.append(base_rates[-1])
            for mode, figures in variants.items():
                rows, secs = load_from_memory(dbs.fresh(), batches, mode)
                figures.append(rows / secs)
            dbs.drop_all()  # else autovacuum of the databases just loaded competes with the sink for the CPU
            res = run_sink(
                config, dbs.fresh(), f"bench-{run}", args.batch_rows, tmp / f"run{run}", args.helper_share, writers
            )
            if res["rows"] != len(events) or res["duplicates"]:
                raise RuntimeError(f"sink run {run} loaded {res} for {len(events)} events")
            rates.append(res["rows"] / res["busy_s"])
            cpu_rates.append(res["rows"] / res["cpu_s"])
            busy_cpu_rates.append(res["rows"] / res["busy_cpu_s"])
            walls.append(res["wall_s"])
            print(f"run {run}: baseline COPY from memory {base_rates[-1]:,.0f} rows/s "
                  f"(over {writers} connections {same_writers[-1]:,.0f}), sink {rates[-1]:,.0f} rows/s "
                  f"(busy {res['busy_s']:.2f}s, wall {res['wall_s']:.1f}s, {cpu_rates[-1]:,.0f} rows per CPU-s "
                  f"of the sink process, {busy_cpu_rates[-1]:,.0f} while busy); "
                  f"from memory: staging path {variants['staging'][-1]:,.0f} rows/s, "
                  f"explicit loaded_at {variants['explicit_loaded_at'][-1]:,.0f} rows/s", flush=True)  # fmt: skip
            dbs.drop_all()
            if args.sink_tree is not None:
                other = run_sink(
                    config, dbs.fresh(), f"bench-tree-{run}", args.batch_rows, tmp / f"tree{run}",
                    args.helper_share, writers, tree=args.sink_tree.resolve(),
                )  # fmt: skip
                if other["rows"] != len(events) or other["duplicates"]:
                    raise RuntimeError(f"{args.sink_tree} sink run {run} loaded {other} for {len(events)} events")
                tree_rates.append(other["rows"] / other["busy_s"])
                tree_busy_cpu.append(other["rows"] / other["busy_cpu_s"])
                print(f"run {run}: sink of {args.sink_tree} {tree_rates[-1]:,.0f} rows/s, "
                      f"{tree_busy_cpu[-1]:,.0f} rows per CPU-s while busy", flush=True)  # fmt: skip
                dbs.drop_all()
        extras = {f"{mode}_rows_s": round(statistics.median(v)) for mode, v in variants.items()}
        if tree_rates:
            extras.update(
                tree=str(args.sink_tree),
                tree_rows_s=round(statistics.median(tree_rates)),
                tree_busy_rows_per_cpu_s=round(statistics.median(tree_busy_cpu)),
                ratio_to_tree=round(statistics.median(rates) / statistics.median(tree_rates), 4),
                busy_cpu_ratio_to_tree=round(statistics.median(busy_cpu_rates) / statistics.median(tree_busy_cpu), 4),
                per_run_ratio_to_tree=[round(a / b, 4) for a, b in zip(rates, tree_rates, strict=True)],
            )
    finally:
        dbs.drop_all()
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                try:
                    fut.result()
                except Exception as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
    value, baseline = statistics.median(rates), statistics.median(base_rates)
    result = {
        "bench": "sink",
        "value": round(value),
        "unit": "rows/s",
        "baseline": round(baseline),
        "ratio": round(value / baseline, 4),
        "writers": writers,
        "baseline_same_writers_rows_s": round(statistics.median(same_writers)),
        "ratio_same_writers": round(value / statistics.median(same_writers), 4),
        "runs": args.runs,
        "events": len(events),
        "batch_rows": args.batch_rows,
        "helper_share": args.helper_share,
        "rows_per_cpu_s": round(statistics.median(cpu_rates)),
        "busy_rows_per_cpu_s": round(statistics.median(busy_cpu_rates)),
        "wall_s": round(statistics.median(walls), 2),
        "target_rows_s": 150_000,
        **extras,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _clear_bench_rows(dsn: str, base_ms: int) -> None:
    """Delete what one load of the benchmark's events added (they all have ts >= base_ms), then VACUUM."""
    from sink.rows import TABLES

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE ts >= to_timestamp(%s / 1000.0)").format(sql.Identifier(table)),
                (base_ms,),
            )
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(table)))


def _run_into(config: Config, dbs: Databases, args: argparse.Namespace, events: list, batches: list, tmp: Path,
              writers: int) -> int:  # fmt: skip
    """``--database``: every load goes into one existing database (holding history), cleared after each."""
    from datetime import UTC, datetime

    from bench.sink.data import BASE_MS
    from sink.partitions import maintain

    dsn = _dsn_for(dbs.admin, args.database)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows_before = conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone()[0]  # type: ignore[index]
        # the ranges of the events' time, as a sink running at that time would have created them ahead (no-op on
        # an unpartitioned database)
        maintain(
            conn, msgspec.structs.replace(dbs.pg, timescaledb="off"), now=datetime.fromtimestamp(BASE_MS / 1000, UTC)
        )
    _clear_bench_rows(dsn, BASE_MS)
    base_rates, rates = [], []
    for run in range(args.runs):
        rows, secs = load_from_memory(dsn, batches, "direct")
        base_rates.append(rows / secs)
        _clear_bench_rows(dsn, BASE_MS)
        group = f"bench-{uuid.uuid4().hex[:6]}"
        res = run_sink(config, dsn, group, args.batch_rows, tmp / f"run{run}", args.helper_share, writers)
        if res["rows"] != len(events) or res["duplicates"]:
            raise RuntimeError(f"sink run {run} loaded {res} for {len(events)} events")
        rates.append(res["rows"] / res["busy_s"])
        _clear_bench_rows(dsn, BASE_MS)
        print(f"run {run}: into {args.database} ({rows_before:,} delta rows before): baseline COPY from memory "
              f"{base_rates[-1]:,.0f} rows/s, sink {rates[-1]:,.0f} rows/s (busy {res['busy_s']:.2f}s)",
              flush=True)  # fmt: skip
    value, baseline = statistics.median(rates), statistics.median(base_rates)
    result = {"bench": "sink", "database": args.database, "history_delta_rows": rows_before, "value": round(value),
              "unit": "rows/s", "baseline": round(baseline), "ratio": round(value / baseline, 4), "writers": writers,
              "runs": args.runs, "events": len(events), "batch_rows": args.batch_rows}  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from mdpipe.failures import guarded

    sys.exit(guarded(main, "bench.sink"))  # expected failures: one line, no traceback
