"""``mdpipe archive raw``: the raw topics and ``markets`` -> Parquet by gatherer and date (:mod:`archive.raw`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mdpipe.config import Config

__all__ = ["add_parser", "run", "sources"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "archive",
        help="archive the raw topics to Parquet by gatherer and date (resumable), for replay after retention",
        description="raw: read raw.<gatherer> of every configured gatherer (and the markets topic) from where the "
        "archive ends to the current end of each partition, and write Parquet files "
        "DIR/raw/gatherer=<id>/date=YYYY-MM-DD/p<partition>-<first>-<last>.parquet. A second run appends only what "
        "is new. `mdpipe replay --from-archive DIR` rebuilds the database from it.",
    )
    parser.add_argument("what", choices=["raw"], help="raw: the raw topics (and markets)")
    parser.add_argument("--to-dir", required=True, metavar="DIR", help="directory or fsspec URL (s3://bucket/prefix)")
    parser.add_argument("--gatherers", metavar="ID,ID", help="gatherer ids (default: gather.ids)")
    parser.add_argument("--no-markets", action="store_true", help="do not archive the markets topic")
    parser.add_argument("--max-rows", type=int, default=200_000, help="rows (frames) per file at most (200000)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="give up on a partition silent this long (10)")
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option")
    return parser


def sources(config: Config, gatherers: list[str] | None, markets: bool) -> list[Any]:
    from archive.raw import SourceTopic
    from mdpipe.topics import topic_names

    names = topic_names(config)
    ids = gatherers or list(names.raw)
    prefix = config.kafka.topic_prefix
    out = [SourceTopic(names.raw.get(g, f"{prefix}raw.{g}"), f"raw/gatherer={g}") for g in ids]
    if markets:
        out.append(SourceTopic(names.markets, "markets"))
    return out


def run(args: argparse.Namespace, config: Config) -> int:
    from archive.export_cli import parse_storage_options
    from archive.raw import RawArchiver
    from archive.storage import open_location
    from mdpipe.kafka import consumer_config

    location = open_location(args.to_dir, **parse_storage_options(args.storage_option))
    gatherers = [g.strip() for g in args.gatherers.split(",")] if args.gatherers else None
    conf = consumer_config(config.kafka, f"mdpipe-archive-{time.strftime('%Y%m%d%H%M%S')}")
    archiver = RawArchiver(
        conf, location, sources(config, gatherers, not args.no_markets), max_rows=args.max_rows, idle_s=args.idle_s
    )
    stats = archiver.run()
    covered = {t: {str(p): list(r) for p, r in parts.items()} for t, parts in stats.covered.items()}
    expired = {t: {str(p): list(r) for p, r in parts.items()} for t, parts in stats.expired.items()}
    print(
        json.dumps(
            {"records": stats.records, "rows": stats.rows, "files": stats.files, "covered": covered, "expired": expired}
        )
    )
    return 0
