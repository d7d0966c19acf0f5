"""Snapshots and books for `mdpipe verify` (pure logic, no I/O).

- **Snapshots by content.** Every order-book snapshot row must equal, level for level (normalised decimals, sorted,
  no zero levels), some ``SnapshotSent`` of the same market in the venue's record. Which connection it came from
  does not matter: dedup keeps one copy.
- **Book integrity.** For every ``BookCheckpoint`` (the venue's book of a market holding every delta with venue time
  ``<= T``) the book is rebuilt from the database rows as :func:`sink.book.book_at` defines it (the latest snapshot
  row at or before ``T`` plus the delta rows it does not contain, placed by the snapshot's ``ts`` and
  ``after_keys``; :func:`books_at` does it for a market's checkpoints in one pass) and compared with the venue's.
  ``mdpipe verify`` has the database rebuild these books itself with its ``book_at`` SQL function
  (:mod:`sink.book_db`; same rule, proven equal by a property test), so every verified run proves the path users
  query; without it (a database not migrated to 0006) :func:`books_at` rebuilds them here from the rows.
  A (market, T) is skipped, and counted *unchecked*, when no gatherer had subscribed the market's order book by
  the checkpoint (nothing could be stored), or when its first snapshot row is placed after ``T`` (the database cannot
  say what the book was before it). A subscribed market without any snapshot row is a mismatch: its book cannot be
  rebuilt.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ops.verify_record import ORDERBOOK, NormalisedBook, VenueRecord, normalised_book
from sink.book import Book, DeltaRow, SnapshotRow, apply, contains, latest_snapshot, venue_order
from venue_sim.record import BookCheckpoint

__all__ = ["BookResult", "SnapshotResult", "books_at", "check_books", "level_diff", "match_snapshots"]


@dataclass
class SnapshotResult:
    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class BookResult:
    checkpoints: int = 0  # distinct checkpoint times
    compared: int = 0  # (market, time) pairs compared
    checked: int = 0  # markets compared at their last checkpoint
    unchecked: int = 0  # (market, time) pairs skipped (see the module docstring)
    mismatched: set[str] = field(default_factory=set)  # markets with a mismatch at any checkpoint
    examples: list[str] = field(default_factory=list)


def _plain(value: Decimal | None) -> str:
    """A normalised decimal as people write it (10, not 1E+1); ``-`` for no level."""
    return "-" if value is None else f"{value:f}"


def _levels(levels: Sequence[tuple[Decimal, Decimal]]) -> str:
    return "[" + " ".join(f"{_plain(p)}x{_plain(s)}" for p, s in levels) + "]"


def match_snapshots(
    rows: dict[str, list[SnapshotRow]], sent: dict[str, set[NormalisedBook]], examples: int = 5
) -> SnapshotResult:
    """Count the snapshot rows equal to a snapshot the venue sent for their market, and the others."""
    result = SnapshotResult()
    for market, snaps in rows.items():
        known = sent.get(market, set())
        for snap in snaps:
            result.rows += 1
            content = Book.of(snap.yes, snap.no).normalised()
            if content in known:
                result.matched += 1
                continue
            result.unmatched += 1
            if len(result.examples) < examples:
                result.examples.append(
                    f"{market} ts_ms {snap.ts_ms} yes {_levels(content[0])} no {_levels(content[1])}: "
                    f"the venue sent {len(known)} different snapshot(s) of this market"
                )
    return result


def level_diff(db: NormalisedBook, venue: NormalisedBook, limit: int = 4) -> str:
    """The levels where two books differ, as ``side price: db X venue Y`` (``-`` = no level)."""
    out: list[str] = []
    for side, mine, theirs in (("yes", dict(db[0]), dict(venue[0])), ("no", dict(db[1]), dict(venue[1]))):
        for price in sorted(set(mine) | set(theirs)):
            if mine.get(price) != theirs.get(price):
                out.append(f"{side} {_plain(price)}: db {_plain(mine.get(price))} venue {_plain(theirs.get(price))}")
    more = f" (+{len(out) - limit} more)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def books_at(
    snapshots: Sequence[SnapshotRow], deltas: Iterable[DeltaRow], times: Iterable[int]
) -> Iterator[Book | None]:
    """``sink.book.book_at(snapshots, deltas, T)`` for each ``T`` of ascending ``times``, incrementally: the book is
    rebuilt from a snapshot only when the latest snapshot at ``T`` changes; otherwise the deltas in ``(T_prev, T]``
    are added to the previous book (none of them is in the snapshot: its time is ``<= T_prev``). Each yielded book
    is only valid until the next one is asked for."""
    rows = sorted(deltas, key=venue_order)  # each row's own rule (add or replace), in the venue's order
    stamps = [d.ts_ms for d in rows]
    base: SnapshotRow | None = None
    book = Book()
    done = 0  # rows[:done] are in the book (or in its snapshot)
    for at_ms in times:
        latest = latest_snapshot(snapshots, at_ms)
        if latest is None:
            yield None
            continue
        if latest is not base:
            base, book = latest, Book.of(latest.yes, latest.no)
            done = bisect_left(stamps, latest.ts_ms)  # earlier deltas are inside the snapshot
        upto = bisect_right(stamps, at_ms)
        for d in rows[done:upto]:
            if not contains(base, d):
                apply(book, d)
        done = max(done, upto)
        yield book


def check_books(
    checkpoints: Iterable[BookCheckpoint],
    record: VenueRecord,
    snapshots: dict[str, list[SnapshotRow]],
    deltas: dict[str, list[DeltaRow]],
    examples: int = 5,
    db_books: Mapping[tuple[str, int], Book | None] | None = None,
    *,
    book_rule: Callable[[Sequence[SnapshotRow], Iterable[DeltaRow], int], Book | None] | None = None,
) -> BookResult:
    """Compare the books rebuilt from the database with the venue's at each checkpoint (module docstring).
    ``db_books``: the books the database's ``book_at`` rebuilt per (market, checkpoint ts_ms), used instead of
    rebuilding them here; ``book_rule``: the venue's own rebuild (:meth:`venues.interface.Venue.book_rule`), used
    instead of both."""
    result = BookResult()
    by_market: dict[str, list[BookCheckpoint]] = defaultdict(list)
    times: set[int] = set()
    for cp in checkpoints:
        by_market[cp.market].append(cp)
        times.add(cp.ts_ms)
    result.checkpoints = len(times)
    orderbook = record.channel_of_kind.get("delta", ORDERBOOK)
    checked = 0
    for market, cps in by_market.items():
        cps.sort(key=lambda c: c.ts_ms)
        first = record.first_subscription(orderbook, market)
        due = [cp for cp in cps if first is not None and first.after_id <= cp.after_id]
        result.unchecked += len(cps) - len(due)
        if not due:
            continue
        snaps = snapshots.get(market)
        rebuilt: Iterable[Book | None]
        if book_rule is not None:
            rebuilt = [book_rule(snaps or [], deltas.get(market, ()), cp.ts_ms) for cp in due]
        elif db_books is not None:
            rebuilt = [db_books.get((market, cp.ts_ms)) for cp in due]
        elif snaps:
            rebuilt = books_at(snaps, deltas.get(market, ()), (cp.ts_ms for cp in due))
        else:
            rebuilt = (None for _ in due)
        compared_last = False
        for cp, book in zip(due, rebuilt, strict=True):
            if book is None and snaps:  # its first snapshot row is placed after this checkpoint
                result.unchecked += 1
                continue
            result.compared += 1
            compared_last = cp is cps[-1]
            venue = normalised_book(cp.yes, cp.no)
            mine = book.normalised() if book is not None else None
            if mine == venue:
                continue
            result.mismatched.add(market)
            if len(result.examples) < examples:
                problem = "no snapshot row at all" if mine is None else level_diff(mine, venue)
                result.examples.append(f"{market} at ts_ms {cp.ts_ms}: {problem}")
        checked += compared_last
    result.checked = checked
    return result
