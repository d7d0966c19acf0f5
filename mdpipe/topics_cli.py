"""`mdpipe topics create|describe`: create the pipeline's topics explicitly and show what the broker holds."""

from __future__ import annotations

import argparse
from typing import Any

from mdpipe.config import Config

__all__ = ["add_parser", "format_table", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "topics",
        help="create / describe the Kafka topics (raw.<id>, events, dlq, markets)",
        description="Topics are created explicitly (broker auto-create is off) with kafka.partitions partitions; "
        "names get kafka.topic_prefix.",
    )
    sub = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create missing topics, then check partition counts agree")
    create.add_argument(
        "--extra", action="append", default=[], metavar="TOPIC", help="also create TOPIC like a raw topic (repeat)"
    )
    describe = sub.add_parser("describe", help="table: topic, partitions, replication, retention, cleanup policy")
    describe.add_argument("topics", nargs="*", help="topics to describe (default: the pipeline's topics)")
    return parser


def _retention(ms: int | None) -> str:
    if ms is None:
        return "?"
    if ms < 0:
        return "forever"
    hours = ms / 3_600_000
    return f"{hours / 24:g}d" if hours >= 24 and hours % 24 == 0 else f"{hours:g}h"


def format_table(rows: list[Any]) -> str:
    """Rows of mdpipe.topics.TopicInfo as an aligned text table."""
    header = ("topic", "partitions", "replication", "retention", "cleanup")
    lines = [header] + [
        (r.name, str(r.partitions), str(r.replication), _retention(r.retention_ms), r.cleanup_policy) for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(col.ljust(w) for col, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def run(args: argparse.Namespace, config: Config) -> int:
    from mdpipe.preflight import require_broker
    from mdpipe.topics import describe_topics, ensure_topics

    require_broker(config.kafka)  # bounded: one line when the broker does not answer
    if args.topics_command == "create":
        result = ensure_topics(config, extra=args.extra)
        for name, state in result.items():
            print(f"{name}  {state}")
        print(format_table(describe_topics(config, names=list(result))))
        return 0
    rows = describe_topics(config, names=args.topics or None)
    if not rows:
        print("no such topics (create them with `mdpipe topics create`)")
        return 1
    print(format_table(rows))
    return 0
