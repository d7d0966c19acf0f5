"""`mdpipe replay`: backfill from the topics, idempotently.

- ``mdpipe replay events --from-ts MS --to-ts MS``: re-load the ``events`` topic for a time range into the
  database under a separate consumer group (the sink with ``--exit-when-idle``). Rows already present are
  absorbed by the unique key on (market, ts, event_key, venue), so a replay never duplicates a row.
- ``mdpipe replay dedup --from-ts MS --to-ts MS``: re-run dedup over the raw topics for a time range into
  ``events`` under a separate app id (its own consumer group and state), then, unless ``--no-load``,
  re-load that range into the database as above. The replay's state topics are deleted once it succeeded
  (``--keep-internal-topics`` keeps them).

- ``mdpipe replay --from-archive DIR``: rebuild the database from a raw archive (``mdpipe archive raw``) after
  Kafka's retention has passed: the same dedup decision and normalisation, then the sink's COPY path
  (:mod:`archive.replay`).

Times are Unix epoch milliseconds (venue time for the load, first-copy receive time for dedup).
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from mdpipe.config import Config, ConfigError, run_dir

__all__ = ["DEDUP_MARGIN_MS", "add_parser", "run"]

DEDUP_MARGIN_MS = 60_000


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "replay",
        help="backfill from the topics into events / the database (idempotent)",
        description="Backfill a time range. 'events': re-load the events topic into the database under a new "
        "consumer group. 'dedup': re-run dedup over the raw topics into events under a new app id, then re-load "
        "(unless --no-load). Both are idempotent: the sink's unique key absorbs rows that are already there.",
    )
    parser.add_argument(
        "what", nargs="?", choices=["events", "dedup"], help="events: topic -> database; dedup: raw -> events"
    )
    parser.add_argument(
        "--from-archive", metavar="DIR", help="rebuild the database from a raw archive (path or fsspec URL) instead"
    )
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option")
    parser.add_argument("--from-ts", type=int, metavar="MS", help="start of the range (epoch ms)")
    parser.add_argument("--to-ts", type=int, metavar="MS", help="end of the range, exclusive (epoch ms)")
    parser.add_argument("--id", metavar="NAME", help="suffix of the replay's consumer group / app id (default: time)")
    parser.add_argument("--no-load", action="store_true", help="dedup: only write events, do not re-load the database")
    parser.add_argument("--idle-s", type=float, default=5.0, help="seconds without input that end a replay (5)")
    parser.add_argument(
        "--keep-internal-topics",
        action="store_true",
        help="dedup: keep the replay's state changelog (and Faust's leader topic) instead of deleting them after it",
    )
    return parser


def _run_command(argv: list[str], config: Config) -> int:
    """Run another mdpipe subcommand in this process with the same configuration."""
    from mdpipe.cli import build_parser

    args = build_parser().parse_args(argv)
    return int(args._run(args, config) or 0)


def run(args: argparse.Namespace, config: Config) -> int:
    if args.from_archive:
        from archive.replay_cli import run_from_archive

        return run_from_archive(args, config)
    if args.what is None or args.from_ts is None or args.to_ts is None:
        raise ConfigError("replay: give events|dedup with --from-ts and --to-ts, or --from-archive DIR")
    if args.to_ts <= args.from_ts:
        raise ConfigError("replay --to-ts: must be greater than --from-ts")
    suffix = args.id or time.strftime("%Y%m%d%H%M%S")
    window = ["--from-ts", str(args.from_ts), "--to-ts", str(args.to_ts), "--exit-when-idle"]
    if args.what == "dedup":
        # dedup selects by first-copy receive time, the load by venue time: widen the dedup range by
        # DEDUP_MARGIN_MS so every event whose venue time is in range is re-emitted (extras are absorbed).
        app_id = f"{config.dedup.app_id}-replay-{suffix}"
        workdir = run_dir() / "replay" / app_id
        dedup_window = ["--from-ts", str(args.from_ts - DEDUP_MARGIN_MS), "--to-ts", str(args.to_ts + DEDUP_MARGIN_MS)]
        status = _run_command(
            [
                "dedup",
                "--app-id", app_id,
                "--workdir", str(workdir),
                "--idle-s", str(args.idle_s),
                "--exit-when-idle",
                "--metrics-port", "0",  # the running dedup holds dedup.metrics_port
                *dedup_window,
            ],
            config,
        )  # fmt: skip
        if status != 0:
            return status  # state and topics kept: a re-run with the same --id resumes
        shutil.rmtree(workdir, ignore_errors=True)  # the state only served this replay
        if not args.keep_internal_topics:
            from dedup_stream.startup import delete_internal_topics
            from mdpipe.kafka import kafka_client_config

            delete_internal_topics(kafka_client_config(config.kafka), app_id)
        if args.no_load:
            return status
    sink_group = f"{config.sink.group_id}-replay-{suffix}"
    return _run_command(["sink", "--group", sink_group, "--metrics-port", "0", *window], config)
