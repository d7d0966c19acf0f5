"""Polymarket books, pure logic: one token's live book (the session's cross-check) and the book rebuilt from stored
rows with the venue's REPLACE semantics.

A ``price_change`` entry sets a level to its new size (``"0"`` removes it) [doc]. Normalised
(:mod:`venues.polymarket.normalise`), a token's bids are the ``yes`` ladder and its asks at ``p`` the ``no`` ladder
at ``1 - p``; a :class:`schemas.events.BookDelta` of this venue carries the level's new size in ``delta``. Changes to
different levels commute; changes to one level inside one venue millisecond are ordered by their ``ordinal`` (the
gatherer's count of the level's changes in that millisecond, :mod:`venues.polymarket.keys`), so :func:`book_at`
sorts by ``(ts_ms, ordinal)``. This is the venue's own rebuild, the reference the stored rows are checked against:
the normaliser marks each delta ``replaces`` with that ``ordinal``, and ``sink.book`` and the database's ``book_at``
rebuild from those
(``tests/venues/polymarket/test_book_db.py`` holds all three equal).
Which copy of a change was stored does not matter for its size (the copies carry the same); its ordinal is the
highest any copy carried (:mod:`sink.ordinals`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sink.book import Book, DeltaRow, SnapshotRow, contains, exact, latest_snapshot
from venues.polymarket.wire import BookMsg, PriceChange

__all__ = ["TokenBook", "apply_replace", "book_at", "change_order"]


class TokenBook:
    """One token's bids and asks (price -> size, no zero levels), fed by ``book`` and ``price_change`` messages."""

    __slots__ = ("asks", "bids", "ts_ms")

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.ts_ms = 0

    def reset(self, m: BookMsg) -> None:
        self.bids = {exact(lv.price): lv.size for lv in m.bids if lv.size}
        self.asks = {exact(lv.price): lv.size for lv in m.asks if lv.size}
        self.ts_ms = m.timestamp

    def apply(self, e: PriceChange) -> None:
        side = self.bids if e.side == "BUY" else self.asks
        price = exact(e.price)
        if e.size:
            side[price] = e.size
        else:
            side.pop(price, None)

    @property
    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None

    def agrees(self, e: PriceChange) -> bool:
        """Whether this book's best bid/ask equal what the entry says they are after it (absent = not checked).

        The venue reports an empty side as best bid ``"0"`` / best ask ``"1"`` [doc: migration guide example]."""
        if e.best_bid is not None and (self.best_bid or Decimal(0)) != e.best_bid:
            return False
        return e.best_ask is None or (self.best_ask if self.best_ask is not None else Decimal(1)) == e.best_ask


def change_order(delta: DeltaRow) -> tuple[int, int]:
    """Sort key of a stored change: venue ms, then its order among its level's changes in that ms."""
    return delta.ts_ms, delta.ordinal


def apply_replace(book: Book, delta: DeltaRow) -> None:
    """``level[side][price] = delta`` (the new size); the level disappears at 0."""
    ladder = book.yes if delta.side == "yes" else book.no
    price = exact(delta.price)
    if delta.delta:
        ladder[price] = delta.delta
    else:
        ladder.pop(price, None)


def book_at(snapshots: Iterable[SnapshotRow], deltas: Iterable[DeltaRow], at_ms: int) -> Book | None:
    """The book of one token at venue time ``at_ms``: the latest snapshot at or before it plus, in
    :func:`change_order`, every change with ``ts <= at_ms`` the snapshot does not contain; None without a snapshot."""
    base = latest_snapshot(snapshots, at_ms)
    if base is None:
        return None
    book = Book.of(base.yes, base.no)
    for d in sorted((d for d in deltas if d.ts_ms <= at_ms and not contains(base, d)), key=change_order):
        apply_replace(book, d)
    return book
