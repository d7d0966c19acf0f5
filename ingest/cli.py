"""``mdpipe gather``: run one gatherer (all markets of the venue -> ``raw.<id>``) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "build_gatherer", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "gather",
        help="run one gatherer: every market of the venue into topic raw.<id>",
        description="Subscribe every open market of the venue over as many WebSocket connections as needed and "
        "record each market-data message as a RawFrame in topic raw.<id> (key = market ticker). It starts and runs "
        "without a broker: once the broker has been unreachable for gather.spool_after_s, frames go to an on-disk "
        "spool (fsynced every gather.spool_fsync_s), replayed in order when it answers again; the topic partition "
        "check then runs when the broker first answers. Defaults come from the [venue] "
        "and [gather] config sections. Stops cleanly (flushing) on SIGTERM/SIGINT and exits 0. Exits with status 3 "
        "when it cannot go on (a background task ended, or the delivery/spool loop kept failing for "
        "gather.task_failure_limit_s) so that its supervisor restarts it; /healthz answers 503 from then on. "
        "Exits with status 2 and one line when the venue keeps refusing its credentials (HTTP 401/403) while "
        "nothing streams: 3 refusals in a row lasting 5 s from a start never accepted, or "
        "gather.auth_refusal_limit_s once accepted (a venue it cannot reach is retried however long).",
    )
    p.add_argument("--id", required=True, help="gatherer id, e.g. g1 (topic raw.<id>, metrics stage gather-<id>)")
    p.add_argument("--rest-url", help="venue REST base URL, .../trade-api/v2 (default: venue.rest_url)")
    p.add_argument("--ws-url", help="venue WebSocket URL, .../trade-api/ws/v2 (default: venue.ws_url)")
    p.add_argument(
        "--ca-file",
        metavar="PEM",
        help="CA certificate trusted for wss:// and https:// (default: venue.ca_file; empty = system trust store)",
    )
    p.add_argument("--key-id", help="the venue API key id the gatherer signs with (default: venue.key_id)")
    p.add_argument(
        "--private-key", metavar="PATH", help="PEM file of the RSA private key that signs (default: venue.*)"
    )
    p.add_argument("--no-auth", action="store_true", help="connect without authentication headers")
    p.add_argument(
        "--markets-per-connection",
        type=int,
        metavar="N",
        help="markets per WebSocket connection (default: gather.markets_per_connection)",
    )
    p.add_argument(
        "--markets-per-subscription",
        type=int,
        metavar="N",
        help="markets per subscription; halved automatically on error 26 (default: gather.markets_per_subscription)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="Prometheus/health port; 0 = free port (default: gather.metrics_port + the id's index in gather.ids, "
        "9101 for g1; bind address: gather.metrics_host)",
    )
    p.add_argument("--spool-dir", help="on-disk spool folder (default: gather.spool_dir or .run/spool/<id>)")
    p.add_argument(
        "--no-partition-check", action="store_true", help="skip the start-up check of topic partition counts"
    )
    return p


STARTUP_CHECK_S = 5.0  # how long the start-up partition check waits for the broker before deferring itself


def build_gatherer(
    args: argparse.Namespace, config: Any, partition_check: Any = None, raw_partitions: int | None = None
) -> Any:
    """The Gatherer described by ``config`` and the command-line overrides (not started); ``partition_check`` is a
    deferred topic layout check (see :mod:`ingest.outage`), ``raw_partitions`` the raw topic's partition count as the
    start-up check found it (None: ``kafka.partitions``)."""
    from pathlib import Path

    import msgspec

    from ingest.gatherer import Gatherer
    from ingest.producer import KAFKA_LINGER_MS, RawProducer
    from ingest.spool import Spool
    from ingest.tls import client_context
    from mdpipe.config import ConfigError, run_dir
    from mdpipe.kafka import producer_config
    from mdpipe.topics import topic_names
    from venues import get_venue

    g, v = config.gather, config.venue
    gid = args.id
    names = topic_names(config)
    signer = None
    if v.auth and not args.no_auth:
        try:
            key_path = args.private_key or v.private_key_path
            signer = get_venue(v.name).signer(args.key_id or v.key_id, v.private_key_pem, key_path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config setting venue.private_key_path/key_id: {exc}") from None
    ca_file = getattr(args, "ca_file", None) or v.ca_file
    if ca_file:
        try:
            client_context(ca_file)
        except ValueError as exc:
            raise ConfigError(f"config setting {exc}") from None
    # One spool per topic prefix and gatherer: a spool only ever replays into the topics it was written for.
    spool_dir = Path(args.spool_dir or g.spool_dir or run_dir() / "spool") / f"{config.kafka.topic_prefix}{gid}"
    spool = Spool(spool_dir, g.spool_max_bytes)
    conf = producer_config(
        config.kafka,
        linger_ms=KAFKA_LINGER_MS,
        queue_buffering_max_kbytes=g.queue_max_kbytes,
        batch_num_messages=10000,
        client_id=f"mdpipe-gather-{gid}",
        reconnect_backoff_max_ms=1000,  # a broker that is back is noticed within a second (ingest.outage)
    )
    raw_topic = names.raw.get(gid, f"{config.kafka.topic_prefix}raw.{gid}")
    # the raw topic's partitions each store a record through the reporting producer before the quiet one is used
    # (ingest.producer: librdkafka's implicit ack); their count as the start-up check found it, else the config's
    warm = {raw_topic: raw_partitions or config.kafka.partitions}
    producer = RawProducer(
        conf,
        spool,
        queue_max=g.queue_max_frames,
        warm_topics=warm,
        bundle_max_bytes=g.bundle_max_bytes,
        # bundles group frames by partition: only with the count the broker reported (a deferred check adds it)
        known_partitions={raw_topic: raw_partitions} if raw_partitions else None,
    )
    # the command line's settings go into the sections the gatherer takes (the config's defaults stay the only ones)
    venue = msgspec.structs.replace(
        v, rest_url=args.rest_url or v.rest_url, ws_url=args.ws_url or v.ws_url, ca_file=ca_file
    )
    try:  # through the section's own validation (both must be > 0)
        gather = msgspec.structs.replace(
            g,
            markets_per_connection=args.markets_per_connection or g.markets_per_connection,
            markets_per_subscription=args.markets_per_subscription or g.markets_per_subscription,
        )
    except ValueError as exc:
        raise ConfigError(f"gather --markets-per-connection/--markets-per-subscription: {exc}") from None
    return Gatherer(
        gather,
        venue,
        producer,
        gatherer_id=gid,
        raw_topic=raw_topic,
        dlq_topic=names.dlq,
        markets_topic=names.markets,
        signer=signer,
        partition_check=partition_check,
    )


def run(args: argparse.Namespace, config: Any) -> int:
    import asyncio
    import functools
    import signal

    from confluent_kafka import KafkaException

    from mdpipe.config import gatherer_metrics_port
    from mdpipe.failures import venue_refused
    from mdpipe.logging import get_logger
    from mdpipe.metrics import start_metrics_server
    from mdpipe.topics import check_partitions, topic_names

    log = get_logger("ingest.cli")
    port = args.metrics_port if args.metrics_port is not None else gatherer_metrics_port(config.gather, args.id)
    deferred = None
    raw_partitions = None
    if not args.no_partition_check:
        raw = topic_names(config).raw.get(args.id)
        extra = [] if raw else [f"{config.kafka.topic_prefix}raw.{args.id}"]
        try:
            raw_partitions = check_partitions(config, extra=extra, timeout=STARTUP_CHECK_S)
        except KafkaException as exc:  # no broker: not fatal, the gatherer spools; the check runs once it answers
            log.warning(
                "broker_unreachable_at_start", gatherer=args.id, error=str(exc)[:200], partition_check="deferred"
            )
            deferred = functools.partial(check_partitions, config, extra=extra, timeout=30.0)
    gatherer = build_gatherer(args, config, partition_check=deferred, raw_partitions=raw_partitions)
    server = start_metrics_server(
        port,
        health=gatherer.healthy,
        stage=f"gather-{args.id}",
        host=config.gather.metrics_host,
        setting="gather.metrics_port",
    )
    log.info("gather_metrics", port=server.port, gatherer=args.id)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gatherer.run(stop)

    try:
        asyncio.run(main())
    finally:
        server.close()
    if gatherer.auth_failure is not None:  # one line from the CLI boundary, exit status 2
        raise venue_refused(args.id, gatherer.auth_failure, gatherer.venue_config.ws_url)
    if gatherer.failure is not None:
        log.error("gather_exit_failed", gatherer=args.id, reason=gatherer.failure[:500], status=3)
        return 3
    return 0
