"""``mdpipe export``: event tables for a time range -> Parquet (:mod:`archive.export`), then a one-line summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mdpipe.config import Config, ConfigError

__all__ = ["add_parser", "parse_storage_options", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from archive.export import EVENT_TABLES

    parser = sub.add_parser(
        "export",
        help="export event tables for a time range to Parquet (by table and date; local path or fsspec URL)",
        description="Write the rows of the event tables with FROM <= ts < TO to Parquet files "
        "DIR/<table>/date=YYYY-MM-DD/part-<from_ms>-<to_ms>.parquet: exact decimals, UTC timestamps, readable by "
        "DuckDB, Polars and pandas without the database (docs/data-layer.md). Times: ISO 8601 (UTC unless it says "
        "otherwise) or epoch milliseconds.",
    )
    parser.add_argument("--from", dest="from_", required=True, metavar="T1", help="start of the range (inclusive)")
    parser.add_argument("--to", required=True, metavar="T2", help="end of the range (exclusive)")
    parser.add_argument(
        "--tables",
        default=",".join(EVENT_TABLES),
        metavar="T,T",
        help=f"comma-separated tables (default: {','.join(EVENT_TABLES)})",
    )
    parser.add_argument("--to-dir", required=True, metavar="DIR", help="directory or fsspec URL (s3://bucket/prefix)")
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option, repeatable (e.g. endpoint_url=http://127.0.0.1:9000 for s3://)",
    )
    return parser


def parse_storage_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs -> fsspec storage options; ``client_kwargs.endpoint_url`` style keys become nested."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--storage-option: {item!r} is not KEY=VALUE")
        if key == "endpoint_url":
            out.setdefault("client_kwargs", {})["endpoint_url"] = value
        else:
            out[key] = value
    return out


def run(args: argparse.Namespace, config: Config) -> int:
    from archive.export import ExportError, export, parse_time
    from archive.storage import open_location

    try:
        from_ms = parse_time(args.from_, "export --from")
        to_ms = parse_time(args.to, "export --to")
        tables = [t.strip() for t in args.tables.split(",") if t.strip()]
        location = open_location(args.to_dir, **parse_storage_options(args.storage_option))
        result = export(config.postgres.dsn, location, from_ms, to_ms, tables)
    except ExportError as exc:
        raise ConfigError(str(exc)) from None
    rate = result.rows / result.seconds if result.seconds else 0.0
    print(
        json.dumps(
            {
                "rows": result.rows,
                "files": len(result.files),
                "by_table": result.rows_by_table(),
                "seconds": round(result.seconds, 2),
                "rows_per_s": round(rate),
                "to": args.to_dir,
            }
        )
    )
    return 0
