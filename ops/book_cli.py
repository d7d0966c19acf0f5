"""`mdpipe book`: the order book of one market as it stood at a given time, read from the database (``book_at``)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mdpipe.config import Config, ConfigError
from mdpipe.times import parse_epoch_ms
from sink.book import exact

__all__ = ["add_parser", "format_book", "parse_at", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "book",
        help="print a market's order book as it stood at a given time, from the database",
        description="Rebuild the order book of MARKET at venue time T from the database: the latest snapshot row "
        "at or before T plus the deltas after it that it does not hold, in venue order, each by its own rule (added to "
        "its level, or replacing its size) (the SQL function "
        "book_at(market, ts, venue), see the README's data dictionary). Books are two bid ladders, yes and no; "
        "the best yes ask is 1 - the best no bid. Exit status 1 when the market has no snapshot at or before T.",
    )
    parser.add_argument("--market", required=True, help="market ticker")
    parser.add_argument(
        "--venue",
        help="the venue whose market it is (default: venue.name from config; a market name may exist at two venues)",
    )
    parser.add_argument(
        "--at",
        required=True,
        metavar="T",
        help="venue time: ISO 8601 (2026-01-01T12:00:00.250Z; no zone = UTC), or milliseconds since the epoch",
    )
    parser.add_argument("--depth", type=int, default=10, help="levels per side to print (default 10; 0 = all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (prices and sizes as strings)")
    parser.add_argument("--dsn", help="database (default: postgres.dsn from config / `mdpipe infra up`)")
    return parser


def parse_at(text: str) -> int:
    """``--at`` as venue milliseconds since the epoch."""
    try:
        return parse_epoch_ms(text)
    except ValueError as exc:
        raise ConfigError(f"book --at: {exc}") from None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(d: Decimal) -> str:
    return f"{exact(d):f}"


def _ladder(levels: dict[Decimal, Decimal], depth: int) -> list[tuple[Decimal, Decimal]]:
    best = sorted(levels.items(), key=lambda kv: kv[0], reverse=True)
    return best[:depth] if depth > 0 else best


def book_dict(found: Any, depth: int) -> dict[str, Any]:
    snap_ms = int(found.snapshot_ts.timestamp() * 1000)
    return {
        "venue": found.venue,
        "market": found.market,
        "at": _iso(found.at_ms),
        "at_ms": found.at_ms,
        "snapshot_at": _iso(snap_ms),
        "snapshot_event_key": found.snapshot_key,
        "yes": [[_plain(p), _plain(s)] for p, s in _ladder(found.book.yes, depth)],
        "no": [[_plain(p), _plain(s)] for p, s in _ladder(found.book.no, depth)],
    }


def format_book(data: dict[str, Any]) -> str:
    """Both bid ladders side by side, best first."""
    lines = [
        f"{data['venue']} {data['market']} at {data['at']} "
        f"(from the snapshot at {data['snapshot_at']} and the deltas after it)",
        f"{'yes bid':>10} {'size':>14}   {'no bid':>10} {'size':>14}",
    ]
    yes, no = data["yes"], data["no"]
    for i in range(max(len(yes), len(no))):
        left = f"{yes[i][0]:>10} {yes[i][1]:>14}" if i < len(yes) else " " * 25
        right = f"{no[i][0]:>10} {no[i][1]:>14}" if i < len(no) else ""
        lines.append(f"{left}   {right}".rstrip())
    if not yes and not no:
        lines.append("(empty book)")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    import psycopg

    from sink.book_db import book_at

    dsn = args.dsn or config.postgres.dsn
    if not dsn:
        raise ConfigError("book: postgres.dsn is empty (run `mdpipe infra up`, set MDPIPE_POSTGRES__DSN or --dsn)")
    if args.depth < 0:
        raise ConfigError("book --depth: must be >= 0")
    at_ms = parse_at(args.at)
    venue = args.venue or config.venue.name
    with psycopg.connect(dsn) as conn:
        found = book_at(conn, args.market, at_ms, venue)
    if found is None:
        message = f"{venue} {args.market}: no order-book snapshot at or before {_iso(at_ms)}: the book is unknown"
        out = {"venue": venue, "market": args.market, "at": _iso(at_ms), "error": message}
        print(json.dumps(out) if args.json else message)
        return 1
    data = book_dict(found, args.depth)
    print(json.dumps(data) if args.json else format_book(data))
    return 0
