"""``mdpipe sink``: run the database loader (events + markets -> PostgreSQL), and ``mdpipe sink migrate``."""

from __future__ import annotations

import argparse
import re
import signal
import socket
from typing import Any

import msgspec

from mdpipe.config import INSTANCE_ID, Config, ConfigError

__all__ = ["add_parser", "member_identity", "run"]

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
    parser.add_argument(
        "--batch-ms",
        type=int,
        metavar="MS",
        help="each writer commits at most once per MS ms on average (a full batch at once), so a record waits at "
        "most MS ms in the sink before its batch is committed (default: sink.batch_ms)",
    )
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
    parser.add_argument(
        "--instance-id",
        metavar="ID",
        help="the sink's identity in its group (static membership: a restart with the same ID gets its partitions "
        "back at once; default: sink.instance_id, else <host>-<metrics port> when the port is fixed)",
    )
    parser.add_argument("--from-ts", type=int, metavar="MS", help="replay: only events with ts >= MS (Unix ms)")
    parser.add_argument("--to-ts", type=int, metavar="MS", help="replay: only events with ts < MS (Unix ms)")
    parser.add_argument("--exit-when-idle", action="store_true", help="exit once caught up and idle (for replays)")
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start-up")
    return parser


def run(args: argparse.Namespace, config: Config) -> int:
    from mdpipe.failures import dsn_empty
    from mdpipe.logging import get_logger
    from mdpipe.preflight import require_broker, require_database, wait_for_database
    from sink.migrate import migrate

    log = get_logger("sink.cli")
    dsn = config.postgres.dsn
    if not dsn:
        raise dsn_empty()
    venue = config.venue.name  # the venue of the rows already in the database (migration 0008)
    if args.action == "migrate":
        require_database(dsn)  # bounded: one line when it is unreachable or refuses us
        result = migrate(dsn, config.postgres, venue)
        print(f"schema mode={result.mode} applied={result.applied or 'nothing (up to date)'}")
        return 0
    from sink.rowcodec import resolve as resolve_codec

    try:  # the one setting checked against the install: is the compiled row builder there?
        resolve_codec(config.sink.row_codec)
    except ValueError as exc:
        raise ConfigError(f"config setting sink.{exc}") from None
    if args.writers is not None:
        try:  # the config's own validation (sink.writers must be > 0)
            config = msgspec.structs.replace(config, sink=msgspec.structs.replace(config.sink, writers=args.writers))
        except ValueError as exc:
            print(f"mdpipe sink: --writers: {exc}")
            return 2

    port = args.metrics_port if args.metrics_port is not None else config.sink.metrics_port
    instance_id = args.instance_id if args.instance_id is not None else config.sink.instance_id
    if args.instance_id is not None and args.instance_id and not INSTANCE_ID.match(args.instance_id):
        print(f"mdpipe sink: --instance-id: must match {INSTANCE_ID.pattern}")
        return 2
    flags = {"group_id": args.group, "batch_rows": args.batch_rows, "batch_ms": args.batch_ms}
    try:  # the command line's settings go into the sink's own section, through its validation
        sink = msgspec.structs.replace(
            config.sink,
            instance_id=instance_id or member_identity(socket.gethostname(), port),
            **{name: value for name, value in flags.items() if value is not None},
        )
    except ValueError as exc:
        print(f"mdpipe sink: {exc}")
        return 2
    config = msgspec.structs.replace(config, sink=sink)
    require_broker(config.kafka)
    # The database may not be up yet: wait for it like the loader does; a refused login, a missing database or a
    # DSN that does not parse stop the sink at once (one line, exit status 2) instead of being retried for ever.
    wait_for_database(
        dsn,
        initial_s=config.sink.backoff_initial_s,
        max_s=config.sink.backoff_max_s,
        warn=lambda failure, delay: log.warning("database_unavailable", error=str(failure), retry_s=delay),
        attempt=None if args.no_migrate else (lambda: (require_database(dsn), migrate(dsn, config.postgres, venue))),
    )

    from mdpipe.metrics import start_metrics_server
    from sink.loader import Loader

    loader = Loader(config, from_ms=args.from_ts, to_ms=args.to_ts, exit_when_idle=args.exit_when_idle)
    from sink.partitions import MaintenanceThread

    partitions = MaintenanceThread(config.postgres.dsn, config.postgres).start()  # ranges ahead, strays, retention
    server = start_metrics_server(
        port,
        health=loader.healthy,
        stage=f"sink-{sink.group_id}",
        host=config.sink.metrics_host,
        setting="sink.metrics_port",
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loader.stop())
    _tune_interpreter()
    from confluent_kafka import KafkaError, KafkaException

    from mdpipe.failures import sink_fenced

    try:
        stats = loader.run()
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        fenced = err is not None and (err.code() == KafkaError.FENCED_INSTANCE_ID or "fenced" in err.str().lower())
        if err is None or not fenced:
            raise
        log.error("sink_fenced", instance_id=sink.instance_id, error=err.str())
        raise sink_fenced(sink.group_id, sink.instance_id) from exc
    finally:
        partitions.stop()
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


def member_identity(hostname: str, metrics_port: int) -> str:
    """The sink's default group.instance.id: ``<host>-<metrics port>`` (a host runs one sink per fixed port, and a
    restart on the same host and port is the same member); "" (dynamic membership) when the port is 0, since a
    process without a fixed address has no identity a restart could share."""
    if not metrics_port:
        return ""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", hostname)[:180] or "host"
    return f"sink-{host}-{metrics_port}"


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
