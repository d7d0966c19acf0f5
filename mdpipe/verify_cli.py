"""`mdpipe verify`: prove, for one run, that every venue event landed in the database exactly once."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mdpipe.config import Config, ConfigError, run_dir

__all__ = ["add_parser", "format_report", "run", "verify"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "verify",
        help="compare the database with the venue emulator's ground truth",
        description="Compare the rows in the database with the ground truth recorded by `mdpipe sim`: venue events, "
        "rows loaded, missing (by type, with examples), duplicated, unexpected, and the venue-to-database latency. "
        "Exit status 1 when anything is missing, duplicated or unexpected.",
    )
    parser.add_argument(
        "--truth",
        metavar="PATH",
        help="ground-truth file written by `mdpipe sim --truth` (default: .run/demo/truth.msgpack)",
    )
    parser.add_argument("--dsn", help="database to check (default: postgres.dsn from config / `mdpipe infra up`)")
    parser.add_argument("--examples", type=int, default=5, help="how many examples to list per problem (default 5)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def verify(truth_path: Path, dsn: str, examples: int = 5, latency_after_ns: int = 0) -> dict[str, Any]:
    import psycopg

    from mdpipe.verify import compare, iter_truth_items
    from mdpipe.verify_db import first_held_ns, iter_observed, snapshot_count
    from venue_sim.truth import read_truth

    with psycopg.connect(dsn) as conn:
        held = first_held_ns(conn)
        report = compare(
            iter_truth_items(read_truth(truth_path)),
            iter_observed(conn),
            held,
            snapshots=snapshot_count(conn),
            examples=examples,
            latency_after_ns=latency_after_ns,
        )
    return report.as_dict()


def format_report(report: dict[str, Any]) -> str:
    lat = report.get("latency_ms") or {}
    rcv = report.get("receive_latency_ms") or {}
    lines = [
        "verification report",
        f"  venue events        {report['venue_events']:>12,}",
        f"  expected in db      {report['expected']:>12,}   (generated after a gatherer held the market)",
        f"  rows loaded         {report['rows']:>12,}   (+ {report['snapshots']:,} order-book snapshots)",
        f"  matched             {report['matched']:>12,}",
        f"  missing             {report['missing']:>12,}   {report['missing_by_kind'] or ''}",
        f"  duplicated          {report['duplicated']:>12,}   {report['duplicated_by_kind'] or ''}",
        f"  unexpected          {report['unexpected']:>12,}",
        f"  latency venue->db   p50 {lat.get('p50', 0):.1f} ms   p99 {lat.get('p99', 0):.1f} ms   "
        f"max {lat.get('max', 0):.1f} ms",
        f"  venue->gatherer     p50 {rcv.get('p50', 0):.1f} ms   p99 {rcv.get('p99', 0):.1f} ms   "
        f"max {rcv.get('max', 0):.1f} ms   (receive hop alone)",
    ]
    for kind, items in report["missing_examples"].items():
        lines += [f"  missing {kind}: {item}" for item in items]
    lines += [f"  duplicated: {item}" for item in report["duplicated_examples"]]
    lines += [f"  unexpected: {item}" for item in report["unexpected_examples"]]
    lines.append("  RESULT: CLEAN" if report["clean"] else "  RESULT: PROBLEMS FOUND")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config) -> int:
    truth = Path(args.truth) if args.truth else run_dir() / "demo" / "truth.msgpack"
    if not truth.is_file():
        raise ConfigError(f"verify --truth: no ground-truth file at {truth}")
    dsn = args.dsn or config.postgres.dsn
    if not dsn:
        raise ConfigError("postgres.dsn: not set (run `mdpipe infra up` or set MDPIPE_POSTGRES__DSN)")
    report = verify(truth, dsn, args.examples)
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["clean"] else 1
