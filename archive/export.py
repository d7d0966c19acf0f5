"""``mdpipe export``: event tables of the database for a time range -> Parquet files, one per table and UTC date.

Layout (hive-style, so DuckDB, Polars and pyarrow see ``date`` as a column)::

    DIR/<table>/date=YYYY-MM-DD/part-<from_ms>-<to_ms>.parquet

``from_ms``/``to_ms`` are the part of the requested range inside that date: exporting the same range again
replaces the same files; exporting overlapping ranges would hold the overlap twice. Rows are sorted by
(``ts``, ``event_key``), every column of the table is exported (:mod:`archive.schema` gives the types) and each
file's schema metadata names the table and the range. ``DIR/_manifest-<from_ms>-<to_ms>.json``
lists the files written with their rows. Reading uses a server-side cursor: memory stays at one chunk of rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from archive.schema import Column, select_expr
from archive.storage import Location
from mdpipe.logging import get_logger
from mdpipe.times import parse_epoch_ms

__all__ = [
    "DAY_MS",
    "EVENT_TABLES",
    "ExportError",
    "ExportResult",
    "ExportedFile",
    "day_ranges",
    "export",
    "parse_time",
    "table_columns",
    "table_query",
]

log = get_logger(__name__)

EVENT_TABLES = (
    "orderbook_snapshots",
    "orderbook_deltas",
    "trades",
    "tickers",
    "market_lifecycle",
    "coverage_gaps",
)
DAY_MS = 86_400_000
CHUNK_ROWS = 50_000


class ExportError(ValueError):
    """An export that cannot be done as asked (unknown table, a value with no exact Arrow form)."""


@dataclass(frozen=True)
class ExportedFile:
    table: str
    date: str
    path: str  # relative to the export directory
    rows: int
    from_ms: int
    to_ms: int


@dataclass
class ExportResult:
    from_ms: int
    to_ms: int
    files: list[ExportedFile] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def rows_by_table(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.table] = out.get(f.table, 0) + f.rows
        return out


def parse_time(text: str, option: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) or epoch milliseconds, as epoch milliseconds."""
    try:
        return parse_epoch_ms(text)
    except ValueError as exc:
        raise ExportError(f"{option}: {exc}") from None


def day_ranges(from_ms: int, to_ms: int) -> Iterator[tuple[str, int, int]]:
    """``(YYYY-MM-DD, lo, hi)`` for each UTC date that ``[from_ms, to_ms)`` touches, clipped to the range."""
    day = from_ms - from_ms % DAY_MS
    while day < to_ms:
        lo, hi = max(from_ms, day), min(to_ms, day + DAY_MS)
        yield datetime.fromtimestamp(day / 1000, UTC).strftime("%Y-%m-%d"), lo, hi
        day += DAY_MS


def table_columns(conn: psycopg.Connection[Any], table: str) -> list[Column]:
    rows = conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        raise ExportError(f"export: no table {table!r} in the database")
    return [Column(name, udt) for name, udt in rows]


def table_query(table: str, columns: Sequence[Column]) -> str:
    """Rows of ``table`` with from_ms <= ts < to_ms (parameters), in the export's order."""
    cols = ", ".join(select_expr(c) for c in columns)
    return (
        f'SELECT {cols} FROM "{table}" WHERE ts >= to_timestamp(%s / 1000.0) AND ts < to_timestamp(%s / 1000.0)'
        ' ORDER BY ts, event_key COLLATE "C"'
    )


def arrow_schema(table: str, columns: Sequence[Column], metadata: dict[str, str] | None = None) -> pa.Schema:
    meta = {"mdpipe.table": table, **(metadata or {})}
    return pa.schema([pa.field(c.name, c.arrow) for c in columns], metadata=meta)


def to_batch(schema: pa.Schema, columns: Sequence[Column], rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    """Rows from psycopg -> one record batch; a value that has no exact Arrow form raises :class:`ExportError`."""
    arrays = []
    for i, column in enumerate(columns):
        values = [row[i] for row in rows]
        try:
            arrays.append(pa.array(values, type=column.arrow))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ExportError(f"export: column {column.name}: a value has no exact {column.arrow} form: {exc}") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def export(
    dsn: str,
    location: Location,
    from_ms: int,
    to_ms: int,
    tables: Sequence[str] = EVENT_TABLES,
    chunk_rows: int = CHUNK_ROWS,
) -> ExportResult:
    """Write every row of ``tables`` with ``from_ms <= ts < to_ms`` to ``location`` (see the module docstring)."""
    if to_ms <= from_ms:
        raise ExportError("export --to: must be later than --from")
    started = time.monotonic()
    result = ExportResult(from_ms, to_ms)
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        for table in tables:
            columns = table_columns(conn, table)
            if not any(c.name == "ts" for c in columns) or not any(c.name == "event_key" for c in columns):
                raise ExportError(f"export: table {table!r} has no ts/event_key columns (not an event table)")
            query = table_query(table, columns)
            for date, lo, hi in day_ranges(from_ms, to_ms):
                exported = _export_day(conn, location, table, columns, query, date, lo, hi, chunk_rows)
                if exported is not None:
                    result.files.append(exported)
        conn.rollback()
    result.seconds = time.monotonic() - started
    manifest = {**asdict(result), "rows": result.rows, "tables": list(tables)}
    location.write_atomic(
        f"_manifest-{from_ms}-{to_ms}.json", lambda out: out.write(json.dumps(manifest, indent=1).encode())
    )
    log.info("exported", rows=result.rows, files=len(result.files), seconds=round(result.seconds, 2), to=location.url)
    return result


def _export_day(
    conn: psycopg.Connection[Any],
    location: Location,
    table: str,
    columns: Sequence[Column],
    query: str,
    date: str,
    lo: int,
    hi: int,
    chunk_rows: int,
) -> ExportedFile | None:
    meta = {"mdpipe.from_ms": str(lo), "mdpipe.to_ms": str(hi), "mdpipe.date": date}
    schema = arrow_schema(table, columns, meta)
    relative = f"{table}/date={date}/part-{lo}-{hi}.parquet"
    written = 0
    with conn.cursor(name=f"export_{table}") as cur:
        cur.itersize = chunk_rows
        cur.execute(query, (lo, hi))
        first = cur.fetchmany(chunk_rows)
        if not first:
            return None

        def write(out: Any) -> None:
            nonlocal written
            with pq.ParquetWriter(out, schema, compression="zstd") as writer:
                chunk = first
                while chunk:
                    writer.write_batch(to_batch(schema, columns, chunk))
                    written += len(chunk)
                    chunk = cur.fetchmany(chunk_rows)

        location.write_atomic(relative, write)
    return ExportedFile(table, date, relative, written, lo, hi)
