"""The market table's REST view trails the live statuses by ``rest_lag_ms`` (pure; over HTTP in test_record)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from venue_sim.markets import (
    ABSENT,
    ST_ACTIVE,
    ST_CLOSED,
    ST_DETERMINED,
    ST_FINALIZED,
    ST_INACTIVE,
    ST_INITIALIZED,
    MarketTable,
)

BASE = 1_700_000_000_000
# Sets of status codes a listing filters on (a venue's REST filter names one of them).
FILTER_STATUSES: dict[str, tuple[int, ...]] = {
    "unopened": (ST_INITIALIZED,),
    "open": (ST_ACTIVE,),
    "paused": (ST_INACTIVE,),
    "closed": (ST_CLOSED, ST_DETERMINED),
    "settled": (ST_FINALIZED,),
}


def _listing(table: MarketTable, now_ms: int, status: str = "", limit: int = 1000) -> list[int]:
    codes = FILTER_STATUSES[status] if status else None
    view = table.rest_view(now_ms)
    out: list[int] = []
    start = 0
    while True:
        idx, nxt = table.page(codes, start, limit, view)
        out += idx
        if nxt < 0:
            return out
        assert idx, "a page that promises more is never empty"
        start = nxt


def test_rest_reports_each_status_as_it_was_lag_ago() -> None:
    t = MarketTable(10, 1, BASE, rest_lag_ms=30_000)
    t.set_status(5, ST_INACTIVE, BASE + 100)
    t.set_status(4, ST_INACTIVE, BASE + 500)
    new = t.add(BASE + 1_000)
    t.set_status(3, ST_INACTIVE, BASE + 2_000)  # deactivated within the lag: REST still says active
    t.set_status(4, ST_ACTIVE, BASE + 2_500)  # re-activated within the lag: REST still says inactive
    t.set_status(new, ST_ACTIVE, BASE + 4_000)  # activated 3 s after created: REST still says initialized
    now = BASE + 31_000  # REST shows the venue as of BASE + 1_000
    view = t.rest_view(now)
    assert t.rest_status(new, view) == ST_INITIALIZED  # created (1 s) seen, activation (4 s) not yet
    assert t.rest_status(3, view) == ST_ACTIVE
    assert t.rest_status(4, view) == ST_INACTIVE  # its pause is visible, its resumption not yet
    assert t.rest_status(5, view) == ST_INACTIVE  # old enough: REST caught up
    assert _listing(t, now, "open") == [0, 1, 2, 3, 6, 7, 8, 9]
    assert _listing(t, now, "paused") == [4, 5]
    assert _listing(t, now, "unopened") == [new]
    assert t.rest_view(BASE + 10_000 + 30_000) == {}  # everything older than the lag: REST = live


def test_a_market_created_within_the_lag_is_not_listed_at_all() -> None:
    t = MarketTable(3, 1, BASE, rest_lag_ms=30_000)
    new = t.add(BASE + 5_000)
    assert _listing(t, BASE + 6_000) == [0, 1, 2]
    assert new not in _listing(t, BASE + 34_000, "unopened")
    assert _listing(t, BASE + 35_000, "unopened") == [new]


def test_no_lag_keeps_no_history() -> None:
    t = MarketTable(5, 1, BASE)
    t.add(BASE)
    t.set_status(1, ST_INACTIVE, BASE)
    assert t.rest_view(BASE) == {} and len(t._changes) == 0
    assert _listing(t, BASE, "paused") == [1]


STATUSES = [ST_INITIALIZED, ST_INACTIVE, ST_ACTIVE, ST_DETERMINED, ST_FINALIZED]


@settings(max_examples=200, deadline=None)
@given(
    initial=st.integers(1, 12),
    lag=st.integers(1, 50),
    steps=st.lists(
        st.tuples(
            st.integers(0, 20),  # time advance
            st.sampled_from(["set", "add", "query"]),
            st.integers(0, 30),  # market (mod count)
            st.sampled_from(STATUSES),
            st.sampled_from(["", *FILTER_STATUSES]),
            st.integers(1, 4),  # page size
        ),
        max_size=40,
    ),
)
def test_lagged_listing_equals_a_replay_of_the_full_history(
    initial: int, lag: int, steps: list[tuple[int, str, int, int, str, int]]
) -> None:
    t = MarketTable(initial, 1, 0, rest_lag_ms=lag)
    history: list[tuple[int, int, int]] = []  # (ms, market, new status), every change ever
    now = 0
    for advance, op, m, status, filt, limit in steps:
        now += advance
        if op == "add":
            i = t.add(now)
            history.append((now, i, ST_INITIALIZED))
        elif op == "set":
            i = m % len(t)
            if t.status[i] != status:
                history.append((now, i, status))
            t.set_status(i, status, now)
        else:
            seen = {}
            for ms, i, s in history:
                if ms <= now - lag:
                    seen[i] = s

            def rest(i: int, seen: dict[int, int] = seen) -> int:
                return seen.get(i, ST_ACTIVE if i < initial else ABSENT)

            codes = FILTER_STATUSES[filt] if filt else None
            want = [i for i in range(len(t)) if rest(i) != ABSENT and (codes is None or rest(i) in codes)]
            assert _listing(t, now, filt, limit) == want
