"""``mdpipe sink``: run the database loader (events + markets -> PostgreSQL), and ``mdpipe sink migrate``."""

from __future__ import annotations

import argparse
import signal
from typing import Any

import msgspec

from mdpipe.config import Config

__all__ = ["add_parser", "run"]

SWITCH_INTERVAL_S = 0.0005  # GIL hand-over latency for the writer thread (default 0.005)
GC_GEN0 = 50_000  # allocations between young-generation collections while loading (default 700)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sink",
        help="load the events topic into PostgreSQL/TimescaleDB exactly once",
        description="Consume `events` (and `markets`) in a consumer group and bulk-load them with binary COPY; "
        "offsets are stored in the same transaction as the rows. `mdpipe sink migrate` only applies the schema.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "migrate"], default="run", help="run (default) or migrate")
    parser.add_argument("--group", metavar="ID", help="consumer group id (default: sink.group_id)")
    parser.add_argument("--batch-rows", type=int, metavar="N", help="flush after N records (default: sink.batch_rows)")
    parser.add_argument("--batch-ms", type=int, metavar="MS", help="flush a batch at most MS ms after its first record")
    parser.add_argument(
        "--writers",
        type=int,
        metavar="N",
        help="database connections writing in parallel, each with its share of the partitions (default: sink.writers)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="Prometheus /metrics port (default: sink.metrics_port, 9121; 0 = any free port; bind address: "
        "sink.metrics_host)",
    )
    parser.add_argument("--from-ts", type=int, metavar="MS", help="replay: only events with ts >= MS (Unix ms)")
    parser.add_argument("--to-ts", type=int, metavar="MS", help="replay: only events with ts < MS (Unix ms)")
    parser.add_argument("--exit-when-idle", action="store_true", help="exit once caught up and idle (for replays)")
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start-up")
    return parser


def run(args: argparse.Namespace, config: Config) -> int:
    from mdpipe.logging import get_logger
    from sink.migrate import migrate

    log = get_logger("sink.cli")
    if not config.postgres.dsn:
        print("mdpipe sink: postgres.dsn is empty (run `mdpipe infra up` or set MDPIPE_POSTGRES__DSN)")
        return 2
    if args.action == "migrate":
        result = migrate(config.postgres.dsn, config.postgres)
        print(f"schema mode={result.mode} applied={result.applied or 'nothing (up to date)'}")
        return 0
    if not args.no_migrate:
        import time

        import psycopg

        delay = config.sink.backoff_initial_s
        while True:  # the database may not be up yet: wait for it like the loader does
            try:
                migrate(config.postgres.dsn, config.postgres)
                break
            except psycopg.OperationalError as exc:
                log.warning("database_unavailable", error=str(exc).strip()[:200], retry_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, config.sink.backoff_max_s)

    from mdpipe.metrics import start_metrics_server
    from sink.loader import Loader, LoaderOptions

    if args.writers is not None:
        try:  # the config's own validation (sink.writers must be > 0)
            config = msgspec.structs.replace(config, sink=msgspec.structs.replace(config.sink, writers=args.writers))
        except ValueError as exc:
            print(f"mdpipe sink: --writers: {exc}")
            return 2

    opts = LoaderOptions.from_config(
        config,
        group_id=args.group,
        batch_rows=args.batch_rows,
        batch_ms=args.batch_ms,
        from_ms=args.from_ts,
        to_ms=args.to_ts,
        exit_when_idle=args.exit_when_idle or None,
    )
    loader = Loader(config, opts)
    port = args.metrics_port if args.metrics_port is not None else config.sink.metrics_port
    server = start_metrics_server(
        port,
        health=loader.healthy,
        stage=f"sink-{opts.group_id}",
        host=config.sink.metrics_host,
        setting="sink.metrics_port",
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loader.stop())
    _tune_interpreter()
    stats = loader.run()
    server.close()
    log.info(
        "sink_stopped",
        rows=stats.rows,
        duplicates=stats.duplicates,
        dead=stats.dead,
        batches=stats.batches,
        busy_s=round(stats.busy_s, 4),
        busy_cpu_s=round(stats.busy_cpu_s, 4),
    )
    return 0


def _tune_interpreter() -> None:
    """GIL switch interval: the writer thread needs the GIL for a moment after each round trip to PostgreSQL
    (about a dozen per batch: BEGIN, two per COPY, offsets, COMMIT) and, with the default 5 ms interval, waited
    up to that long each time for the consumer thread to let go, while the database sat idle: at 0.5 ms the
    writer's time per batch fell ~40% in `make bench-sink` (py-spy, timings of the writer thread).

    Garbage collector: the loader keeps a tracked object or two per record (consumed messages, row lists) until
    the batch commits: with the default thresholds the collector ran every 700 records and took ~10% of the
    sink's CPU (measured in `make bench-sink`). Start-up objects go to the permanent generation; collections run
    every GC_GEN0 allocations instead (cycles are still collected)."""
    import gc
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, 20, 20)
