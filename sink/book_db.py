"""Order books read from the database through its ``book_at`` SQL function (migration 0006): ``mdpipe book`` and
``mdpipe verify``'s book-integrity check use this path, so every verified demo run proves the function.

The function implements :mod:`sink.book`'s rule (the property test ``tests/sink/test_book_sql.py`` holds them
equal). Times are venue milliseconds since the epoch, turned into timestamptz exactly (no floating point).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from sink.book import Book

__all__ = ["BookAt", "book_at", "books_at"]

_AT = "(timestamptz 'epoch' + {} * interval '1 millisecond')"
_ONE = f"""SELECT s.ts, s.event_key, b.side, b.price, b.size
FROM (SELECT 1) AS one
LEFT JOIN LATERAL book_snapshot_at(%(market)s, {_AT.format("%(at_ms)s::bigint")}) AS s ON true
LEFT JOIN LATERAL book_at(%(market)s, {_AT.format("%(at_ms)s::bigint")}) AS b ON s.ts IS NOT NULL"""
_MANY = f"""SELECT c.i, s.ts IS NOT NULL, b.side, b.price, b.size
FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS c(market, at_ms, i)
LEFT JOIN LATERAL book_snapshot_at(c.market, {_AT.format("c.at_ms")}) AS s ON true
LEFT JOIN LATERAL book_at(c.market, {_AT.format("c.at_ms")}) AS b ON s.ts IS NOT NULL"""


@dataclass(frozen=True)
class BookAt:
    """A market's book at a time, and the snapshot row it was rebuilt from."""

    market: str
    at_ms: int
    snapshot_ts: datetime
    snapshot_key: str
    book: Book


def book_at(conn: psycopg.Connection[Any], market: str, at_ms: int) -> BookAt | None:
    """The book of ``market`` at venue time ``at_ms``; None when no snapshot row is at or before it."""
    rows = conn.execute(_ONE, {"market": market, "at_ms": at_ms}).fetchall()
    if not rows or rows[0][0] is None:
        return None
    book = Book()
    for _, _, side, price, size in rows:
        if side is not None:
            (book.yes if side == "yes" else book.no)[price] = size
    return BookAt(market, at_ms, rows[0][0], rows[0][1], book)


def books_at(conn: psycopg.Connection[Any], wanted: Sequence[tuple[str, int]], chunk: int = 2000) -> list[Book | None]:
    """``book_at`` for each ``(market, at_ms)`` of ``wanted``, in order (a few queries for all of them)."""
    out: list[Book | None] = [None] * len(wanted)
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        rows: Iterable[tuple[int, bool, str | None, Decimal | None, Decimal | None]] = conn.execute(
            _MANY, ([m for m, _ in part], [t for _, t in part])
        ).fetchall()
        for i, has_snapshot, side, price, size in rows:
            if not has_snapshot:
                continue
            n = start + int(i) - 1
            book = out[n] or Book()
            out[n] = book
            if side is not None:
                (book.yes if side == "yes" else book.no)[price] = size  # type: ignore[index]
    return out
