"""Reads an export back and counts the rows that differ from the database (``mdpipe demo --export``).

For each table and UTC date of the range, the rows of ``part-<lo>-<hi>.parquet`` and the rows the database holds for
``[lo, hi)`` are compared as Python values (``Decimal``, aware ``datetime``, lists: equal values compare equal
whatever scale or time zone each side used). Fast path: both sides are in the export's order, so they are walked
side by side, a chunk at a time. Only when a pair differs is that table-day counted exactly: both sides become
multisets of row digests (every column, :func:`archive.schema.canonical` values) and ``mismatched`` counts the rows
found on one side only, so a changed value counts twice (the old and the new row), a missing or extra row once. A
missing file counts all its rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from archive.export import EVENT_TABLES, day_ranges, table_columns, table_query
from archive.schema import canonical
from archive.storage import Location

__all__ = ["Comparison", "compare_export", "row_digest"]

CHUNK = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TIMESTAMPTZ_OID = 1184


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
                path = location.path(f"{table}/date={date}/part-{lo}-{hi}.parquet")
                counted = _walk_equal(conn, query, lo, hi, location, path, names)
                if counted is None:
                    counted = _count_differences(conn, query, lo, hi, location, path, names)
                diff, n_db, n_file = counted
                stats["rows"] += n_file
                stats["db_rows"] += n_db
                stats["mismatched"] += diff
                out.rows += n_file
                out.db_rows += n_db
                out.mismatched += diff
        conn.rollback()
    return out


def _epoch_us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _US


def _db_rows(conn: psycopg.Connection[Any], query: str, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """The database rows, timestamps as epoch microseconds (as :func:`_file_rows` reads them)."""
    with conn.cursor(name="compare_rows") as cur:
        cur.itersize = CHUNK
        cur.execute(query, (lo, hi))
        stamps = [i for i, d in enumerate(cur.description or ()) if d.type_code == _TIMESTAMPTZ_OID]
        for row in cur:
            if stamps:
                values = list(row)
                for i in stamps:
                    values[i] = _epoch_us(values[i])
                row = tuple(values)
            yield row


def _file_rows(location: Location, path: str) -> Iterator[tuple[list[str], tuple[Any, ...]]]:
    """(column names, row) for every row of the file at ``path`` (nothing when it does not exist). Timestamps are
    read as epoch microseconds: pyarrow builds a time-zone-aware ``datetime`` ~100x slower than an int."""
    if not location.fs.exists(path):
        return
    with location.fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        for batch in parquet.iter_batches(batch_size=CHUNK):
            columns = [(c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c).to_pylist() for c in batch.columns]
            for row in zip(*columns, strict=True):
                yield names, row


Counted = tuple[int, int, int]  # (rows on one side only, database rows, file rows)


def _walk_equal(
    conn: psycopg.Connection[Any], query: str, lo: int, hi: int, location: Location, path: str, names: list[str]
) -> Counted | None:
    """(0, rows, rows) when the database rows and the file rows are equal pair by pair in order, else None."""
    db_rows, file_rows = _db_rows(conn, query, lo, hi), _file_rows(location, path)
    n = 0
    try:
        for db_row, file_item in zip_longest(db_rows, file_rows):
            if db_row is None or file_item is None:
                return None
            file_names, file_row = file_item
            if file_names != names or db_row != file_row:
                return None
            n += 1
    finally:
        db_rows.close()  # the named cursor, before another one opens
        file_rows.close()
    return 0, n, n


def _count_differences(
    conn: psycopg.Connection[Any], query: str, lo: int, hi: int, location: Location, path: str, names: list[str]
) -> Counted:
    """Rows on one side only, counted over multisets of row digests."""
    db: Counter[bytes] = Counter(row_digest(names, row) for row in _db_rows(conn, query, lo, hi))
    exported: Counter[bytes] = Counter(row_digest(file_names, row) for file_names, row in _file_rows(location, path))
    return (db - exported).total() + (exported - db).total(), db.total(), exported.total()
