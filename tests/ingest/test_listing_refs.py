"""ingest.listing_refs: a venue discovery's references are published when new or changed (not every pass), and a
market the complete listing no longer shows is published once more as unlisted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.listing_refs import UNLISTED, ListingRefs
from schemas.markets import MarketRef


def ref(ticker: str, status: str = "active", title: str = "t", updated_ns: int = 1) -> MarketRef:
    return MarketRef(venue="v", ticker=ticker, title=title, status=status, updated_ns=updated_ns)


def test_only_changes_are_published() -> None:
    refs = ListingRefs()
    assert refs.changes([ref("a"), ref("b")], 1) == [ref("a"), ref("b")]  # the first pass: everything
    assert refs.changes([ref("a", updated_ns=2), ref("b", updated_ns=2)], 2) == []  # nothing changed but the stamp
    changed = ref("b", status="closed", updated_ns=3)
    assert refs.changes([ref("a", updated_ns=3), changed, ref("c", updated_ns=3)], 3) == [
        changed,
        ref("c", updated_ns=3),
    ]
    assert len(refs) == 3


def test_a_market_gone_from_the_listing_is_published_unlisted_once() -> None:
    refs = ListingRefs()
    refs.changes([ref("a", title="A"), ref("b")], 1)
    assert refs.changes([ref("b", updated_ns=5)], 5) == [ref("a", status=UNLISTED, title="A", updated_ns=5)]
    assert refs.changes([ref("b", updated_ns=6)], 6) == []  # not again
    assert refs.changes([ref("a", updated_ns=7), ref("b", updated_ns=7)], 7) == [ref("a", updated_ns=7)]  # back


def test_a_market_listed_twice_counts_once() -> None:
    assert ListingRefs().changes([ref("a", title="first"), ref("a", title="second")], 1) == [ref("a", title="first")]


@given(st.lists(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["active", "closed"])), max_size=4)))
def test_the_published_stream_tells_each_markets_latest_state(passes: list[list[tuple[str, str]]]) -> None:
    """Replaying what was published gives, after every pass, exactly the listing's statuses (unlisted for the rest)."""
    refs = ListingRefs()
    state: dict[str, str] = {}
    ever: set[str] = set()
    for n, listing in enumerate(passes):
        for r in refs.changes([ref(t, s, updated_ns=n) for t, s in listing], n):
            state[r.ticker] = r.status
        first = {}
        for t, s in listing:
            first.setdefault(t, s)
        ever |= set(first)
        assert state == {t: first.get(t, UNLISTED) for t in ever}
