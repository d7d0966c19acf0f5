"""sink.book's rule travels with the rows (pure): a replacing delta sets its level, an additive one adds to it; deltas
apply in venue order (ts, ordinal, event key) whatever order they are given in."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from sink.book import Book, DeltaRow, SnapshotRow, apply, book_at

D = Decimal
SNAP = SnapshotRow(100, "s", [(D("0.40"), D(10))], [(D("0.55"), D(7))])


def test_a_replacing_delta_sets_the_level_and_zero_removes_it() -> None:
    book = Book.of(SNAP.yes, SNAP.no)
    apply(book, DeltaRow(101, "a", "yes", D("0.4"), D(3), replaces=True))
    assert book.yes == {D("0.4"): D(3)}
    apply(book, DeltaRow(101, "b", "yes", D("0.40"), D(2)))  # an additive one still adds
    assert book.yes == {D("0.4"): D(5)}
    apply(book, DeltaRow(102, "c", "no", D("0.55"), D(0), replaces=True))
    assert book.no == {}
    apply(book, DeltaRow(102, "d", "no", D("0.6"), D(4), replaces=True))  # a new level
    assert book.no == {D("0.6"): D(4)}


def test_deltas_of_one_ms_apply_by_ordinal_then_event_key() -> None:
    deltas = [
        DeltaRow(101, "z", "yes", D("0.4"), D(1), replaces=True, ordinal=1),
        DeltaRow(101, "a", "yes", D("0.4"), D(2), replaces=True, ordinal=2),  # the last one: ordinal 2
        DeltaRow(101, "b", "yes", D("0.3"), D(5), replaces=True, ordinal=0),
        DeltaRow(101, "c", "yes", D("0.3"), D(6), replaces=True, ordinal=0),  # same ordinal: event key c after b
    ]
    for order in (deltas, deltas[::-1]):
        got = book_at([SNAP], order, 101)
        assert got is not None and got.yes == {D("0.4"): D(2), D("0.3"): D(6)}


_rows = st.lists(
    st.builds(
        DeltaRow,
        st.integers(100, 104),
        st.text("abc", min_size=1, max_size=3),
        st.sampled_from(["yes", "no"]),
        st.sampled_from([D("0.4"), D("0.40"), D("0.55"), D("0.6")]),
        st.integers(-5, 9).map(D),
        st.booleans(),
        st.integers(0, 2),
    ),
    max_size=30,
    unique_by=lambda d: (d.ts_ms, d.event_key),
)


@settings(max_examples=150, deadline=None)
@given(_rows, st.randoms(use_true_random=False))
def test_the_book_does_not_depend_on_storage_order(rows: list[DeltaRow], rnd: random.Random) -> None:
    """The book is the one of applying the rows one by one in venue order, whatever order they come in."""
    want = Book.of(SNAP.yes, SNAP.no)
    for d in sorted(rows, key=lambda d: (d.ts_ms, d.ordinal, d.event_key)):
        if d.ts_ms > SNAP.ts_ms:
            apply(want, d)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    got = book_at([SNAP], shuffled, 104)
    assert got is not None and got.normalised() == want.normalised()


def test_books_keep_every_digit_of_sizes_and_prices() -> None:
    """Sizes and prices of up to 37 significant digits (what the venues' number checks accept) rebuild exactly: the
    default decimal context would round them, and two books that differ past the 28th digit would compare equal."""
    size = D("123456789012345678.901234567891")  # 30 significant digits
    price = D("0.123456789012345678")
    book = Book.of([(price, size)], [])
    apply(book, DeltaRow(101, "a", "yes", price, D("0.000000000001")))
    assert book.normalised()[0] == ((price, D("123456789012345678.901234567892")),)
    other = Book.of([(price, D("123456789012345678.901234567890"))], [])
    assert book.normalised() != other.normalised()
