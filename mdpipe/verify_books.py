"""Snapshots and books for `mdpipe verify` (pure logic, no I/O).

- **Snapshots by content.** Every order-book snapshot row must equal, level for level (normalised decimals, sorted,
  no zero levels), some ``SnapshotSent`` of the same market in the venue's record. Which connection it came from
  does not matter: dedup keeps one copy.
- **Book integrity.** For every ``BookCheckpoint`` (the venue's book of a market holding every delta with venue time
  ``<= T``) the book is rebuilt from the database rows with :func:`sink.book.book_at` (the latest snapshot row at or
  before ``T`` plus the delta rows it does not contain, placed by the snapshot's ``ts`` and ``after_keys``) and
  compared with the venue's. A (market, T) is skipped, and counted *unchecked*, when no gatherer had subscribed the
  market's order book by the checkpoint (nothing could be stored), or when its only snapshot rows are placed after
  ``T`` (a snapshot's position is the first venue time it can be placed at; the book before it is not in the
  database). A subscribed market without any snapshot row is a mismatch: its book cannot be rebuilt.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mdpipe.verify_record import ORDERBOOK, NormalisedBook, VenueRecord, normalised_book
from sink.book import Book, DeltaRow, SnapshotRow, book_at, latest_snapshot
from venue_sim.record import BookCheckpoint

__all__ = ["BookResult", "SnapshotResult", "check_books", "level_diff", "match_snapshots"]


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


class _Deltas:
    """One market's delta rows sorted by venue time, so a rebuild reads only the rows between snapshot and T."""

    __slots__ = ("rows", "times")

    def __init__(self, rows: Iterable[DeltaRow]) -> None:
        self.rows = sorted(rows, key=lambda d: d.ts_ms)
        self.times = [d.ts_ms for d in self.rows]

    def between(self, lo_ms: int, hi_ms: int) -> list[DeltaRow]:
        """Rows with ``lo_ms <= ts <= hi_ms`` (those before a snapshot's time are inside it anyway)."""
        return self.rows[bisect_left(self.times, lo_ms) : bisect_right(self.times, hi_ms)]


def check_books(
    checkpoints: Iterable[BookCheckpoint],
    record: VenueRecord,
    snapshots: dict[str, list[SnapshotRow]],
    deltas: dict[str, list[DeltaRow]],
    examples: int = 5,
) -> BookResult:
    """Compare the books rebuilt from the database with the venue's at each checkpoint (module docstring)."""
    result = BookResult()
    cps = sorted(checkpoints, key=lambda c: (c.ts_ms, c.market))
    if not cps:
        return result
    last = {c.market: c.ts_ms for c in cps}  # each market's last checkpoint (cps are sorted by time)
    result.checkpoints = len({c.ts_ms for c in cps})
    sorted_deltas: dict[str, _Deltas] = {}
    checked: set[str] = set()
    for cp in cps:
        first = record.first_subscription(ORDERBOOK, cp.market)
        if first is None or first.after_id > cp.after_id:
            result.unchecked += 1
            continue
        venue = normalised_book(cp.yes, cp.no)
        snaps = snapshots.get(cp.market)
        if not snaps:
            problem = "no snapshot row at all"
        else:
            base = latest_snapshot(snaps, cp.ts_ms)
            if base is None:
                result.unchecked += 1
                continue
            rows = sorted_deltas.get(cp.market)
            if rows is None:
                rows = sorted_deltas[cp.market] = _Deltas(deltas.get(cp.market, ()))
            book = book_at(snaps, rows.between(base.ts_ms, cp.ts_ms), cp.ts_ms)
            assert book is not None  # base exists
            rebuilt = book.normalised()
            problem = "" if rebuilt == venue else level_diff(rebuilt, venue)
        result.compared += 1
        if cp.ts_ms == last[cp.market]:
            checked.add(cp.market)
        if problem:
            result.mismatched.add(cp.market)
            if len(result.examples) < examples:
                result.examples.append(f"{cp.market} at ts_ms {cp.ts_ms}: {problem}")
    result.checked = len(checked)
    return result
