"""Reads an export back and counts the rows that differ from the database (``mdpipe demo --export``).

For each table and UTC date of the range, the rows of ``part-<lo>-<hi>.parquet`` and the rows the database holds for
``[lo, hi)`` are reduced to a multiset of row digests (every column, :func:`archive.schema.canonical` values);
``mismatched`` counts the rows found on one side only, so a changed value counts twice (the old and the new row), a
missing or extra row once. A missing file counts all its rows. Memory: 16 bytes and a counter per row of one
table-day.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow.parquet as pq

from archive.export import EVENT_TABLES, day_ranges, table_columns, table_query
from archive.schema import canonical
from archive.storage import Location

__all__ = ["Comparison", "compare_export", "row_digest"]


@dataclass
class Comparison:
    rows: int = 0  # rows read back from the export
    db_rows: int = 0  # rows the database holds in the range
    mismatched: int = 0  # rows on one side only
    by_table: dict[str, dict[str, int]] = field(default_factory=dict)


def row_digest(names: Sequence[str], row: Iterable[Any]) -> bytes:
    return hashlib.blake2b(repr(tuple(zip(names, map(canonical, row), strict=True))).encode(), digest_size=16).digest()


def compare_export(
    dsn: str, location: Location, from_ms: int, to_ms: int, tables: Sequence[str] = EVENT_TABLES
) -> Comparison:
    out = Comparison()
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        for table in tables:
            columns = table_columns(conn, table)
            names = [c.name for c in columns]
            query = table_query(table, columns)
            stats = out.by_table.setdefault(table, {"rows": 0, "db_rows": 0, "mismatched": 0})
            for date, lo, hi in day_ranges(from_ms, to_ms):
                db: Counter[bytes] = Counter()
                with conn.cursor(name=f"compare_{table}") as cur:
                    cur.itersize = 50_000
                    cur.execute(query, (lo, hi))
                    for row in cur:
                        db[row_digest(names, row)] += 1
                exported: Counter[bytes] = Counter()
                path = location.path(f"{table}/date={date}/part-{lo}-{hi}.parquet")
                if location.fs.exists(path):
                    with location.fs.open(path, "rb") as f:
                        data = pq.read_table(f)
                    file_names = data.column_names
                    for batch in data.to_batches():
                        for record in batch.to_pylist():
                            exported[row_digest(file_names, (record[n] for n in file_names))] += 1
                n_db, n_file = db.total(), exported.total()
                diff = (db - exported).total() + (exported - db).total()
                stats["rows"] += n_file
                stats["db_rows"] += n_db
                stats["mismatched"] += diff
                out.rows += n_file
                out.db_rows += n_db
                out.mismatched += diff
        conn.rollback()
    return out
