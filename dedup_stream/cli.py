"""`mdpipe dedup`: run one dedup worker over the raw topics, writing first copies to ``events``.

Two engines run the same decision (:mod:`dedup_stream.logic`): ``native`` (default; a confluent-kafka batch
consumer, :mod:`dedup_stream.native`) and ``faust`` (the Faust app, :mod:`dedup_stream.app`).

Several workers with the same ``--app-id`` and separate ``--workdir`` share the partitions (a Kafka consumer
group). ``--from-ts/--to-ts/--exit-when-idle`` with a fresh ``--app-id`` re-run dedup over a time range of the
raw topics into ``events`` (what `mdpipe replay` uses).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any

import msgspec

from mdpipe.config import Config, ConfigError, run_dir

__all__ = ["add_parser", "group_instance_id", "run", "topic_names"]


def topic_names(config: Config) -> tuple[list[str], str, str]:
    """(raw topics, events topic, dlq topic) with the configured ``kafka.topic_prefix``."""
    from mdpipe.topics import topic_names as pipeline_topics

    names = pipeline_topics(config)
    return list(names.raw.values()), names.events, names.dlq


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dedup",
        help="deduplicate raw.<gatherer> topics into events (one worker)",
        description="Run one dedup worker: consumes every raw topic, keeps the first copy of each venue event "
        "(state in RocksDB, bounded by dedup.window_s), writes it to the events topic. Start several with the same "
        "--app-id and different --workdir to share the partitions.",
    )
    p.add_argument(
        "--engine",
        choices=["native", "faust"],
        help="native: confluent-kafka batch worker; faust: the Faust app (default: dedup.engine, native). "
        "Both use the same state changelog name and consumer group, but not each other's local state (nor "
        "changelog records: the native engine writes batch records the Faust engine cannot restore, so change "
        "engines with a new --app-id), and both "
        "send an event (re-emits included) only after its winner's changelog record is acknowledged, so a crash "
        "or failover never lets another copy win",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="folder for this worker's RocksDB state (default: "
        "dedup.data_dir, else .run/dedup/<app-id>/w1); one per worker, never shared",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="Prometheus /metrics port (default: dedup.metrics_port, 9111; 0 = any free port; bind address: "
        "dedup.metrics_host)",
    )
    p.add_argument(
        "--app-id",
        metavar="ID",
        help="app id = consumer group + changelog prefix (default: dedup.app_id); use a new one for a replay",
    )
    p.add_argument(
        "--window-s",
        type=float,
        metavar="S",
        help="how long an event key is remembered; must exceed "
        "the worst delay between the first and the last copy (default: dedup.window_s)",
    )
    p.add_argument(
        "--raw-topics",
        metavar="T1,T2",
        help="comma-separated raw topics (default: raw.<id> for every gather.ids, with kafka.topic_prefix)",
    )
    p.add_argument("--events-topic", metavar="T", help="output topic (default: events, with kafka.topic_prefix)")
    p.add_argument("--dlq-topic", metavar="T", help="dead-letter topic (default: dlq, with kafka.topic_prefix)")
    p.add_argument(
        "--from-ts",
        type=int,
        metavar="MS",
        help="replay: emit only events whose first copy was "
        "received at or after this time (epoch ms); raw partitions start there (minus the warm-up)",
    )
    p.add_argument(
        "--to-ts",
        type=int,
        metavar="MS",
        help="replay: emit only events whose first copy was received before this time (epoch ms)",
    )
    p.add_argument(
        "--warmup-s",
        type=float,
        metavar="S",
        help="replay: read this long before --from-ts to "
        "recognise late copies of earlier events (default: 60, capped at the window)",
    )
    p.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="stop once every assigned raw partition is "
        "drained and no frame arrived for --idle-s (for replays and benchmarks)",
    )
    p.add_argument(
        "--idle-s",
        type=float,
        default=5.0,
        metavar="S",
        help="idle time before --exit-when-idle stops the worker (default: 5)",
    )
    p.add_argument(
        "--standby-replicas",
        type=int,
        metavar="N",
        help="faust engine only: table standbys on other workers (default: dedup.standby_replicas)",
    )
    p.add_argument(
        "--group-instance-id",
        metavar="ID",
        help="native engine: static group membership id (default: dedup.group_instance_id; '' there = "
        "<host>-<workdir name>; 'none' = dynamic membership). A worker restarted under its id gets its partitions "
        "back without a rebalance or a session timeout",
    )
    p.add_argument(
        "--session-timeout-s",
        type=float,
        metavar="S",
        help="consumer session timeout: how soon a dead worker's partitions move (default: dedup.session_timeout_s)",
    )
    p.add_argument(
        "--take",
        type=int,
        default=1000,
        metavar="N",
        help="faust engine only: consume with stream.take_events(N) (default 1000; 0 = one event at a time, "
        "about 25%% more CPU per frame in bench-dedup)",
    )
    p.add_argument(
        "--skip-partition-check",
        action="store_true",
        help="do not check that the raw and events topics exist with kafka.partitions partitions",
    )
    return p


def group_instance_id(configured: str, workdir: Path) -> str:
    """The native worker's static membership id: ``configured``, or ``<host>-<workdir name>`` when empty; ""
    (dynamic membership) for "none"."""
    if configured.lower() == "none":
        return ""
    return configured or f"{socket.gethostname()}-{workdir.name}"


def run(args: argparse.Namespace, config: Config) -> int:
    from dedup_stream.logic import TimeRange
    from dedup_stream.metrics import summary
    from dedup_stream.settings import DedupSettings
    from dedup_stream.startup import check_partitions, seed_replay_offsets
    from mdpipe.kafka import kafka_client_config
    from mdpipe.logging import get_logger
    from mdpipe.metrics import start_metrics_server
    from mdpipe.preflight import require_broker

    log = get_logger("dedup_stream.cli")
    dc = config.dedup
    raw_default, events_default, dlq_default = topic_names(config)
    raw_topics = [t for t in (args.raw_topics or "").split(",") if t] or raw_default
    events_topic = args.events_topic or events_default
    dlq_topic = args.dlq_topic or dlq_default
    # the command line's overrides are checked before anything is done with them (the config's own are at load)
    if args.window_s is not None and args.window_s <= 0:
        raise ConfigError(f"dedup: --window-s must be > 0, got {args.window_s}")
    if args.session_timeout_s is not None and args.session_timeout_s <= 0:
        raise ConfigError(f"dedup: --session-timeout-s must be > 0, got {args.session_timeout_s}")
    if args.standby_replicas is not None and args.standby_replicas < 0:
        raise ConfigError(f"dedup: --standby-replicas must be >= 0, got {args.standby_replicas}")
    app_id = args.app_id or dc.app_id
    window_s = args.window_s or dc.window_s
    workdir = Path(args.workdir or dc.data_dir or run_dir() / "dedup" / app_id / "w1")
    if args.from_ts is not None and args.to_ts is not None and args.to_ts <= args.from_ts:
        raise ConfigError("dedup: --to-ts must be after --from-ts")
    warmup_s = min(window_s, 60.0 if args.warmup_s is None else args.warmup_s)
    time_range = TimeRange()
    if args.from_ts is not None or args.to_ts is not None:
        time_range = TimeRange(
            from_ns=(args.from_ts or 0) * 1_000_000,
            to_ns=args.to_ts * 1_000_000 if args.to_ts is not None else TimeRange().to_ns,
            warmup_ns=int(warmup_s * 1e9) if args.from_ts is not None else 0,
        )
    client = kafka_client_config(config.kafka)
    require_broker(config.kafka)  # bounded: one line when the broker does not answer
    if not args.skip_partition_check:
        check_partitions(client, [*raw_topics, events_topic], config.kafka.partitions)
    if args.from_ts is not None:
        seed_replay_offsets(client, app_id, raw_topics, args.from_ts - int(warmup_s * 1000))
    engine = args.engine or dc.engine
    overrides: dict[str, Any] = {"app_id": app_id, "window_s": window_s}
    if args.standby_replicas is not None:
        overrides["standby_replicas"] = args.standby_replicas
    if args.session_timeout_s:
        overrides["session_timeout_s"] = args.session_timeout_s
    native = engine == "native"
    settings = DedupSettings(
        config=msgspec.structs.replace(dc, **overrides),
        bootstrap_servers=config.kafka.bootstrap_servers,
        raw_topics=raw_topics,
        partitions=config.kafka.partitions,
        workdir=workdir,
        events_topic=events_topic,
        dlq_topic=dlq_topic,
        replication_factor=config.kafka.replication_factor,
        time_range=time_range,
        exit_when_idle=args.exit_when_idle,
        idle_s=args.idle_s,
        take=args.take,
        # the Faust engine's client (aiokafka) has no lz4 here: none or gzip there
        compression=config.kafka.compression if native or config.kafka.compression == "gzip" else "none",
        static_member_id=group_instance_id(args.group_instance_id or dc.group_instance_id, workdir) if native else "",
        client_conf=client,
    )
    dedup: Any
    if native:
        from dedup_stream.native import build_worker

        dedup = build_worker(settings)
    else:
        from dedup_stream.app import build_app

        dedup = build_app(settings)
    port = dc.metrics_port if args.metrics_port is None else args.metrics_port
    server = start_metrics_server(
        port,
        health=dedup.is_healthy,
        stage=f"dedup-{workdir.name}",
        host=dc.metrics_host,
        setting="dedup.metrics_port",
    )
    log.info(
        "dedup_start",
        app_id=app_id,
        engine=engine,
        raw_topics=",".join(raw_topics),
        events=events_topic,
        workdir=str(workdir),
        window_s=window_s,
        metrics_port=server.port,
        pid=os.getpid(),
    )
    try:
        status = dedup.run(loglevel=config.log.level.lower())
    finally:
        server.close()
    log.info(
        "dedup_stop",
        status=status,
        frames=dedup.frames,
        busy_s=round(dedup.busy_s(), 3),
        busy_cpu_s=round(dedup.busy_cpu_s(), 3),
        events_out=dedup.events_out,
        batches=getattr(dedup, "batches", None),  # native engine: consumed batches (frames / batches = mean batch)
        summary=json.dumps(summary(dedup.deduper.stats)),
    )
    return status
