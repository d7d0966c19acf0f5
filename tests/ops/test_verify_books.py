"""verify's book rebuilding: books_at (one pass over a market's checkpoints) equals sink.book.book_at at every
checkpoint, whatever the snapshots, their same-millisecond boundaries and the deltas."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ops.verify_books import books_at
from sink.book import DeltaRow, SnapshotRow, book_at

prices = st.sampled_from([Decimal("0.40"), Decimal("0.43"), Decimal("0.5")])
sizes = st.sampled_from([Decimal(1), Decimal(-1), Decimal("2.50"), Decimal(5)])
delta = st.tuples(st.integers(0, 6), st.sampled_from(["yes", "no"]), prices, sizes)
level = st.tuples(prices, st.sampled_from([Decimal(1), Decimal(3)]))


@st.composite
def market(draw: st.DrawFn) -> tuple[list[SnapshotRow], list[DeltaRow], list[int]]:
    deltas = [
        DeltaRow(ts, f"k{i}", side, p, d) for i, (ts, side, p, d) in enumerate(draw(st.lists(delta, max_size=25)))
    ]
    snapshots = []
    for n in range(draw(st.integers(0, 3))):
        ts = draw(st.integers(0, 6))
        same_ms = [d.event_key for d in deltas if d.ts_ms == ts]
        after = draw(st.sets(st.sampled_from(same_ms))) if same_ms else set()
        snapshots.append(SnapshotRow(ts, f"s{n}", draw(st.lists(level, max_size=3)), draw(st.lists(level, max_size=3)),
                                     frozenset(after)))  # fmt: skip
    times = sorted(draw(st.lists(st.integers(-1, 7), min_size=1, max_size=6)))
    return snapshots, deltas, times


@settings(max_examples=500, deadline=None)
@given(market())
def test_books_at_equals_book_at_at_every_checkpoint(case: tuple[list[SnapshotRow], list[DeltaRow], list[int]]) -> None:
    snapshots, deltas, times = case
    for at_ms, book in zip(times, books_at(snapshots, deltas, times), strict=True):
        expected = book_at(snapshots, deltas, at_ms)
        assert (book.normalised() if book else None) == (expected.normalised() if expected else None), at_ms
