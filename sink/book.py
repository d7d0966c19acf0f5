"""Order books rebuilt from stored rows: a snapshot plus the deltas it does not contain (pure logic, no I/O).

Books are two bid ladders (``yes`` and ``no`` bids), each a map price -> size; a level that reaches 0 disappears.
Everything is exact (``Decimal``). The rule of a delta travels with its row (``BookDelta.replaces``, a column of
``orderbook_deltas``): an additive delta (``replaces`` False) adds its signed size to one level; a replacing one
(``replaces`` True) sets the level to its size. A venue's normaliser picks the rule; nothing here names a venue.

A stored snapshot does not say *when* the venue took it, so the gatherer places it in the market's delta stream
(by the venue's session): a snapshot row with venue time ``S`` and ``after_keys`` ``A`` contains every
delta of its market with ``ts < S`` and those with ``ts == S`` whose event key is not in ``A``. The book at time ``T``
is then the snapshot with the greatest ``S <= T`` plus every delta with ``ts <= T`` that this snapshot does not
contain, applied in VENUE order: by ``ts``, then ``ordinal`` (the venue's order inside one millisecond, from its
normaliser), then event key (code-point order; a tie-break that only matters for rows of equal ``ts`` and
``ordinal``). Additive deltas commute, so for them the order changes nothing; replacing deltas of one level do not.
Which gatherer's copy of a delta was stored does not matter (copies are equal). ``mdpipe verify`` checks books with
this module, against the venue's own; the SQL ``book_at`` (migration 0010) implements the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal

__all__ = [
    "EXACT",
    "Book",
    "DeltaRow",
    "SnapshotRow",
    "apply",
    "book_at",
    "contains",
    "exact",
    "latest_snapshot",
    "venue_order",
]

# Book arithmetic and comparisons keep every digit: the default context rounds to 28 significant digits, while the
# venues' number checks accept up to 37 and the database's numeric keeps them all.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

Levels = Sequence[tuple[Decimal, Decimal]]


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    ts_ms: int
    event_key: str
    yes: Levels
    no: Levels
    after_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeltaRow:
    ts_ms: int
    event_key: str
    side: str  # "yes" | "no"
    price: Decimal
    delta: Decimal  # added to the level, or (replaces) the level's new size
    replaces: bool = False
    ordinal: int = 0  # order among deltas of the same ts_ms (see the module docstring)


@dataclass(slots=True)
class Book:
    """Two bid ladders, price -> size (no zero levels)."""

    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, yes: Iterable[tuple[Decimal, Decimal]], no: Iterable[tuple[Decimal, Decimal]]) -> Book:
        book = cls()
        for side, levels in (("yes", yes), ("no", no)):
            ladder = book.yes if side == "yes" else book.no
            for price, size in levels:
                if size:
                    level = exact(price)
                    ladder[level] = EXACT.add(ladder.get(level, Decimal(0)), size)
        return book

    def normalised(self) -> tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]:
        """Both ladders as sorted ``(price, size)`` tuples with normalised decimals, for comparing books."""
        return (
            tuple(sorted((exact(p), exact(s)) for p, s in self.yes.items() if s)),
            tuple(sorted((exact(p), exact(s)) for p, s in self.no.items() if s)),
        )


def exact(d: Decimal) -> Decimal:
    """``d`` normalised without losing a digit ("0.4300" -> "0.43"; any zero -> 0)."""
    return d.normalize(EXACT) if d else Decimal(0)


def contains(snapshot: SnapshotRow, delta: DeltaRow) -> bool:
    """Whether ``snapshot``'s book already holds ``delta`` (see the module docstring)."""
    if delta.ts_ms != snapshot.ts_ms:
        return delta.ts_ms < snapshot.ts_ms
    return delta.event_key not in snapshot.after_keys


def venue_order(delta: DeltaRow) -> tuple[int, int, str]:
    """Sort key of the order deltas apply in: ``(ts_ms, ordinal, event_key)``."""
    return delta.ts_ms, delta.ordinal, delta.event_key


def apply(book: Book, delta: DeltaRow) -> None:
    """``level[side][price] += delta`` (or ``= delta`` when it ``replaces``); the level disappears at 0."""
    ladder = book.yes if delta.side == "yes" else book.no
    price = exact(delta.price)
    size = delta.delta if delta.replaces else EXACT.add(ladder.get(price, Decimal(0)), delta.delta)
    if size:
        ladder[price] = size
    else:
        ladder.pop(price, None)


def latest_snapshot(snapshots: Iterable[SnapshotRow], at_ms: int) -> SnapshotRow | None:
    """The snapshot with the greatest ``ts_ms <= at_ms`` (ties: the greatest event key, so the choice is stable)."""
    best: SnapshotRow | None = None
    for s in snapshots:
        if s.ts_ms <= at_ms and (best is None or (s.ts_ms, s.event_key) > (best.ts_ms, best.event_key)):
            best = s
    return best


def book_at(snapshots: Iterable[SnapshotRow], deltas: Iterable[DeltaRow], at_ms: int) -> Book | None:
    """The book of one market at venue time ``at_ms`` (every delta with ``ts <= at_ms``, in :func:`venue_order`;
    ``deltas`` in any order); None without a snapshot."""
    base = latest_snapshot(snapshots, at_ms)
    if base is None:
        return None
    book = Book.of(base.yes, base.no)
    for d in sorted((d for d in deltas if d.ts_ms <= at_ms and not contains(base, d)), key=venue_order):
        apply(book, d)
    return book
