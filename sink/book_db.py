"""Order books read from the database through its ``book_at`` SQL function (migrations 0006, 0008, 0010): ``mdpipe
book`` and ``mdpipe verify``'s book-integrity check use this path, so every verified demo run proves the function.

The function implements :mod:`sink.book`'s rule (the property test ``tests/sink/test_book_sql.py`` holds them
equal). Times are venue milliseconds since the epoch, turned into timestamptz exactly (no floating point). A market
name may exist at two venues: ``venue`` picks one; None takes the venue of the latest snapshot at or before the time
(the deltas always come from that snapshot's venue, so a book never mixes venues).
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
_ONE = f"""SELECT s.ts, s.event_key, s.venue, b.side, b.price, b.size
FROM (SELECT 1) AS one
LEFT JOIN LATERAL book_snapshot_at(%(market)s, {_AT.format("%(at_ms)s::bigint")}, %(venue)s) AS s ON true
LEFT JOIN LATERAL book_at(%(market)s, {_AT.format("%(at_ms)s::bigint")}, s.venue) AS b ON s.ts IS NOT NULL"""
_MANY = f"""SELECT c.i, s.ts IS NOT NULL, b.side, b.price, b.size
FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS c(market, at_ms, i)
LEFT JOIN LATERAL book_snapshot_at(c.market, {_AT.format("c.at_ms")}, %s) AS s ON true
LEFT JOIN LATERAL book_at(c.market, {_AT.format("c.at_ms")}, s.venue) AS b ON s.ts IS NOT NULL"""


@dataclass(frozen=True)
class BookAt:
    """A market's book at a time, and the snapshot row it was rebuilt from."""

    market: str
    venue: str
    at_ms: int
    snapshot_ts: datetime
    snapshot_key: str
    book: Book


def book_at(conn: psycopg.Connection[Any], market: str, at_ms: int, venue: str | None = None) -> BookAt | None:
    """The book of ``market`` (of ``venue``; None = the venue of the latest snapshot) at venue time ``at_ms``; None
    when no snapshot row is at or before it."""
    rows = conn.execute(_ONE, {"market": market, "at_ms": at_ms, "venue": venue}).fetchall()
    if not rows or rows[0][0] is None:
        return None
    book = Book()
    for _, _, _, side, price, size in rows:
        if side is not None:
            (book.yes if side == "yes" else book.no)[price] = size
    return BookAt(market, rows[0][2], at_ms, rows[0][0], rows[0][1], book)


def books_at(
    conn: psycopg.Connection[Any], wanted: Sequence[tuple[str, int]], chunk: int = 2000, venue: str | None = None
) -> list[Book | None]:
    """``book_at`` for each ``(market, at_ms)`` of ``wanted`` (of ``venue``), in order (a few queries for all)."""
    out: list[Book | None] = [None] * len(wanted)
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        rows: Iterable[tuple[int, bool, str | None, Decimal | None, Decimal | None]] = conn.execute(
            _MANY, ([m for m, _ in part], [t for _, t in part], venue)
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
