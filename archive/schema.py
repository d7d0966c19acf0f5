"""Arrow types of the exported tables, derived from the database's own column types (pure, no I/O).

Exact and self-describing: ``numeric`` (prices in dollars, sizes in contracts) becomes ``decimal128(38, 10)``, never
a float; a value that does not fit (more than 10 decimal places, 28 integer digits) stops the export with the column
named instead of being rounded. ``timestamptz`` becomes ``timestamp[us, tz=UTC]`` (PostgreSQL's own precision);
arrays become lists of the element type; ``jsonb`` is kept as its JSON text. :func:`canonical` maps a value read from
either side (psycopg or pyarrow) to one comparable form, so an export can be checked against the database row for
row (:mod:`archive.compare`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sink.book import exact

__all__ = ["DECIMAL", "Column", "UnsupportedType", "arrow_type", "canonical", "select_expr"]

DECIMAL = pa.decimal128(38, 10)
TIMESTAMP = pa.timestamp("us", tz="UTC")

_SCALARS: dict[str, pa.DataType] = {
    "numeric": DECIMAL,
    "timestamptz": TIMESTAMP,
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "int8": pa.int64(),
    "int4": pa.int32(),
    "int2": pa.int16(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "jsonb": pa.string(),
    "json": pa.string(),
    "bytea": pa.binary(),
    "uuid": pa.string(),
}


class UnsupportedType(ValueError):
    """A column whose PostgreSQL type has no exact Arrow counterpart here."""


class Column:
    """One exported column: its name, PostgreSQL type (``udt_name``: ``_`` prefix = array) and Arrow type."""

    __slots__ = ("arrow", "name", "udt")

    def __init__(self, name: str, udt: str) -> None:
        self.name = name
        self.udt = udt
        self.arrow = arrow_type(udt, name)

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.udt!r})"


def arrow_type(udt: str, column: str = "?") -> pa.DataType:
    """The Arrow type of a PostgreSQL ``udt_name`` (``_numeric`` = ``numeric[]``)."""
    if udt.startswith("_"):
        return pa.list_(arrow_type(udt[1:], column))
    try:
        return _SCALARS[udt]
    except KeyError:
        raise UnsupportedType(f"column {column}: PostgreSQL type {udt} has no Arrow mapping") from None


def select_expr(column: Column) -> str:
    """The SELECT expression that reads ``column`` in a form :func:`arrow_type` takes (JSON and uuid as text)."""
    if column.udt in ("jsonb", "json", "uuid"):
        return f'"{column.name}"::text AS "{column.name}"'
    return f'"{column.name}"'


def canonical(value: Any) -> Any:
    """A hashable form equal for equal values whatever side read them: decimals without trailing zeros, datetimes in
    UTC, lists as tuples."""
    if isinstance(value, Decimal):
        return ("d", str(exact(value)))
    if isinstance(value, datetime):
        return ("t", value.astimezone(UTC).isoformat())
    if isinstance(value, list | tuple):
        return tuple(canonical(v) for v in value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value
