"""The market registry (:mod:`ingest.registry`) under Kalshi's vocabulary (pure): lifecycle types, which of REST and
lifecycle is newer, releases by look-up.

The property test plays generated venue histories -- lifecycle changes (known, neutral, unknown types), REST-only
closes -- against a gatherer that receives the lifecycle messages late by up to 2 s and sees REST views that lag
the truth by up to 30 s, and checks that a market is never released while its last received lifecycle status
says hold and nothing has changed since, that neutral and unknown types never change holding, and that once
things settle the registry holds exactly the markets the venue says are live.
"""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.registry import MarketRegistry
from venues.kalshi.discovery import (
    HOLD_STATUSES,
    LIFECYCLE_STATUS,
    RELEASE_STATUSES,
    Listings,
    RestMarket,
    classify_event,
)

S = 1_000_000_000  # ns per second
LAG_S = 60.0


def rest(ticker: str, status: str) -> RestMarket:
    return RestMarket(ticker, status=status, title=f"title {ticker}")


def registry() -> MarketRegistry:
    return MarketRegistry(Listings("http://venue.invalid/trade-api/v2"), LAG_S)


def test_event_types() -> None:
    assert [classify_event(t) for t in ("created", "activated", "deactivated")] == ["hold"] * 3
    assert [classify_event(t) for t in ("determined", "settled")] == ["release"] * 2
    neutral = ("", "metadata_updated", "close_date_updated", "price_level_structure_updated")
    assert [classify_event(t) for t in neutral] == ["neutral"] * 4
    assert classify_event("fee_schedule_updated") == "unknown"
    assert {"initialized", "inactive", "active"} <= HOLD_STATUSES
    assert {"closed", "determined", "finalized"} <= RELEASE_STATUSES


def test_neutral_and_unknown_lifecycle_types_never_change_holding() -> None:
    reg = registry()
    reg.apply_listing([rest("A", "active")], 0)
    for t, event in enumerate(["", "metadata_updated", "close_date_updated", "price_level_structure_updated", "new"]):
        assert reg.apply_lifecycle("A", event, (t + 1) * S) == (False, False)
        assert reg.apply_lifecycle("B", event, (t + 1) * S) == (False, False)
    assert "A" in reg and "B" not in reg
    # and they leave no "ended" mark behind: a listing still adds a market that only had unknown messages
    assert reg.apply_listing([rest("B", "active")], 10 * S).add == ["B"]


def test_created_is_held_at_once_and_deactivated_keeps_it() -> None:
    reg = registry()
    assert reg.apply_lifecycle("N", "created", 1 * S) == (True, False)
    assert reg.apply_lifecycle("N", "activated", 2 * S) == (False, False)
    assert reg.apply_lifecycle("N", "deactivated", 3 * S) == (False, False)
    assert reg.apply_lifecycle("N", "activated", 4 * S) == (False, False)
    assert "N" in reg
    assert reg.apply_lifecycle("N", "determined", 5 * S) == (False, True)
    assert reg.apply_lifecycle("N", "settled", 6 * S) == (False, False)
    assert "N" not in reg


def test_lifecycle_outranks_rest_requested_within_the_lag() -> None:
    reg = registry()
    reg.apply_listing([rest("A", "active")], 0)
    reg.apply_lifecycle("A", "determined", 100 * S)
    # a stale open listing: not re-added, and its reference data carries the lifecycle status
    early = reg.apply_listing([rest("A", "active")], 130 * S)
    assert early.add == [] and early.stale == 1 and [r.status for r in early.refs] == ["determined"]
    assert "A" not in reg
    # requested a full lag after the change: REST is the newer view (here: still active, so held again)
    late = reg.apply_listing([rest("A", "active")], 160 * S)
    assert late.add == ["A"] and late.stale == 0


def test_a_stale_terminal_rest_status_does_not_release_an_activated_market() -> None:
    reg = registry()
    reg.apply_listing([rest("A", "closed")], 0)
    assert "A" not in reg
    assert reg.apply_lifecycle("A", "activated", 10 * S) == (True, False)
    assert reg.apply_listing([rest("A", "closed")], 40 * S).remove == []
    assert "A" in reg
    assert reg.apply_listing([rest("A", "closed")], 71 * S).remove == ["A"]


def test_rest_status_refs_are_published_once_per_status() -> None:
    reg = registry()
    first = reg.apply_listing([rest("A", "active")], 0)
    assert [r.status for r in first.refs] == ["active"] and first.add == ["A"]
    assert reg.apply_listing([rest("A", "active")], 1 * S).refs == []
    assert [r.status for r in reg.apply_listing([rest("A", "inactive")], 2 * S).refs] == ["inactive"]
    # a market held from a lifecycle message gets its reference data from the first REST view of it
    reg.apply_lifecycle("N", "created", 3 * S)
    refs = reg.apply_listing([rest("N", "initialized")], 4 * S).refs
    assert [(r.ticker, r.status, r.title) for r in refs] == [("N", "initialized", "title N")]


def test_unknown_rest_status_keeps_the_market() -> None:
    reg = registry()
    reg.apply_listing([rest("A", "active")], 0)
    changes = reg.apply_listing([rest("A", "suspended_for_review")], 1 * S)
    assert changes.remove == [] and changes.unknown_statuses == ["suspended_for_review"] and "A" in reg


def test_unlisted_markets_are_released_only_by_a_lookup() -> None:
    reg = registry()
    reg.apply_listing([rest(t, "active") for t in "ABCDE"], 0)
    reg.apply_lifecycle("E", "deactivated", 100 * S)
    # the next pass lists only A: B paused (REST), C closed (REST only), D unknown to REST, E paused by lifecycle
    seen: set[str] = set()
    reg.apply_listing([rest("A", "active")], 110 * S, seen)
    assert sorted(reg.held) == list("ABCDE"), "a listing releases nothing it did not show"
    missing = reg.unlisted(seen, 110 * S)
    assert sorted(missing) == ["B", "C", "D"], "E changed within the lag: any REST view of it would be stale"
    looked = reg.apply_lookup(missing, [rest("B", "inactive"), rest("C", "closed")], 111 * S)
    assert looked.remove == ["C"]
    assert sorted(reg.held) == ["A", "B", "D", "E"]
    # D: absent from one look-up is not enough; absent again a full lag later it is released
    assert reg.apply_lookup(["D"], [], 140 * S).remove == []
    assert reg.apply_lookup(["D"], [], 172 * S).remove == ["D"]
    # listed in between resets the absence
    reg.apply_listing([rest("F", "active")], 200 * S)
    assert reg.apply_lookup(["F"], [], 210 * S).remove == []
    reg.apply_listing([rest("F", "active")], 220 * S)
    assert reg.apply_lookup(["F"], [], 275 * S).remove == []


# -- property: generated histories -------------------------------------------------------------
LIFECYCLE_TYPES = [*LIFECYCLE_STATUS, "", "metadata_updated", "close_date_updated", "price_level_structure_updated"]
LIFECYCLE_TYPES += ["fee_schedule_updated", "strike_updated"]  # types the gatherer does not know
LISTINGS = {"open": "active", "paused": "inactive", "unopened": "initialized"}
MAX_REST_LAG_S = 30.0
MAX_DELIVERY_S = 2.0

# REST views lag by up to 30 s; gaps between steps straddle the 60 s lag and the 30 s REST lag on purpose.
lags = st.one_of(st.sampled_from([0.0, 15.0, 29.0, MAX_REST_LAG_S]), st.floats(0.0, MAX_REST_LAG_S))
gaps = st.one_of(st.sampled_from([0.5, 5.0, 15.0, 25.0, 35.0, 45.0, 59.0, 61.0, 90.0]), st.floats(0.01, 90.0))
steps = st.lists(
    st.tuples(
        gaps,  # time since the previous step
        st.one_of(
            st.tuples(st.just("lc"), st.sampled_from(LIFECYCLE_TYPES), st.floats(0.0, MAX_DELIVERY_S)),
            st.tuples(st.just("lc"), st.sampled_from(list(LIFECYCLE_STATUS)), st.floats(0.0, MAX_DELIVERY_S)),
            st.tuples(st.just("rest_close")),  # closes at its close time: REST only
            st.tuples(st.just("discover"), st.tuples(lags, lags, lags, lags)),
            st.tuples(st.just("refresh"), lags),
            st.tuples(st.just("refresh"), lags),
        ),
    ),
    min_size=1,
    max_size=30,
)
# one window of up to 20 s, from the time of step k on, in which REST answers without the market (flaky)
flaky_windows = st.one_of(st.none(), st.tuples(st.integers(0, 29), st.floats(0.0, 20.0)))
# the moment REST stops knowing the market at all (e.g. moved to /historical)
vanish_times = st.one_of(st.none(), st.floats(0.0, 1500.0))


class Venue:
    """The truth for one market: its status over venue time (None before anything set one), and what REST shows."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.statuses: list[str] = []
        self.vanished = float("inf")
        self.flaky = (0.0, 0.0)

    def set(self, t: float, status: str) -> None:
        self.times.append(t)
        self.statuses.append(status)

    def at(self, t: float) -> str | None:
        i = bisect.bisect_right(self.times, t)
        return self.statuses[i - 1] if i else None

    def rest_view(self, requested: float, lag: float) -> str | None:
        """What a REST request sent at ``requested`` shows: the truth ``lag`` seconds old, or nothing."""
        if requested >= self.vanished or self.flaky[0] <= requested < self.flaky[1]:
            return None
        return self.at(requested - lag)

    def changed_between(self, start: float, end: float) -> bool:
        return any(start < t <= end for t in self.times) or start < self.vanished <= end


def _discover(reg: MarketRegistry, venue: Venue, now: float, d: tuple[float, float, float, float]) -> None:
    """What Gatherer.discover_once does, against REST views that lag by d[i] seconds per request."""
    seen: set[str] = set()
    for (_, response_status), lag in zip(LISTINGS.items(), d[:3], strict=True):
        listed = venue.rest_view(now, lag) == response_status
        reg.apply_listing([rest("M", response_status)] if listed else [], int(now * S), seen)
    missing = reg.unlisted(seen, int(now * S))
    if missing:
        view = venue.rest_view(now, d[3])
        reg.apply_lookup(missing, [rest("M", view)] if view is not None else [], int(now * S))


@settings(max_examples=1000, deadline=None)
@given(steps, flaky_windows, vanish_times)
def test_generated_histories(
    history: list[tuple[float, tuple]], flaky: tuple[int, float] | None, vanish: float | None
) -> None:
    venue = Venue()
    venue.vanished = float("inf") if vanish is None else vanish
    ops: list[tuple[float, int, tuple]] = []
    t = 0.0
    last_recv = 0.0
    for n, (gap, action) in enumerate(history):
        t += gap
        if flaky is not None and n == flaky[0] % len(history):
            venue.flaky = (t, t + flaky[1])
        if action[0] == "lc":
            status = LIFECYCLE_STATUS.get(action[1])
            if status is not None:
                venue.set(t, status)
            last_recv = max(last_recv, t + action[2])  # one connection: delivered in order
            ops.append((last_recv, n, ("deliver", action[1], t)))
        elif action[0] == "rest_close":
            venue.set(t, "closed")  # a market closing at its close time: no WebSocket event
        else:
            ops.append((t, n, action))
    ops.sort(key=lambda op: (op[0], op[1]))

    reg = registry()
    last_known: tuple[str, float] | None = None  # (class, venue time) of the last delivered hold/release type
    for now, _, op in ops:
        if op[0] == "deliver":
            held = "M" in reg
            kind = classify_event(op[1])
            reg.apply_lifecycle("M", op[1], int(now * S))
            if kind in ("neutral", "unknown"):
                assert ("M" in reg) == held, f"{op[1]!r} changed holding"
            else:
                last_known = (kind, op[2])
                assert ("M" in reg) == (kind == "hold")
        elif op[0] == "discover":
            _discover(reg, venue, now, op[1])
        else:
            view = venue.rest_view(now, op[1])
            if view is not None:
                reg.apply_listing([rest("M", view)], int(now * S))
        # never released while the last lifecycle status received says hold and the venue changed nothing since
        # (a market REST no longer knows at all is released after two look-ups a lag apart, by design)
        unchanged = last_known is not None and not venue.changed_between(last_known[1], now)
        if unchanged and last_known[0] == "hold" and venue.vanished > now:
            assert "M" in reg, f"released at {now:.2f} s, venue still {venue.at(now)}"

    # settled: two passes a full lag apart, long after the last change, see the venue as it is
    end = max([t, venue.flaky[1], *(op[0] for op in ops)]) + LAG_S + MAX_REST_LAG_S + 1
    for when in (end, end + LAG_S + 1):
        _discover(reg, venue, when, (0.0, 0.0, 0.0, 0.0))
    final = venue.rest_view(end, 0.0)
    assert ("M" in reg) == (final is not None and final not in RELEASE_STATUSES), final


def test_gather_settings_are_checked() -> None:
    import json

    import pytest

    from mdpipe.config import ConfigError, GatherConfig, load_config
    from venues.kalshi.discovery import LISTING_STATUSES, Listings

    assert GatherConfig().discovery_statuses == [] and GatherConfig().rest_lag_s == 60  # [] = the venue's statuses
    assert Listings("http://x").statuses([]) == list(LISTING_STATUSES) == ["open", "paused", "unopened"]
    with pytest.raises(ValueError):
        GatherConfig(rest_lag_s=0)
    for bad in (["paused"], ["open", "closed"]):  # checked by the venue, named as the setting
        environ = {"MDPIPE_VENUE__NAME": "kalshi", "MDPIPE_GATHER__DISCOVERY_STATUSES": json.dumps(bad)}
        with pytest.raises(ConfigError, match=r"^config setting gather\.discovery_statuses .*must include open"):
            load_config(environ=environ, use_infra_state=False)
    environ = {"MDPIPE_VENUE__NAME": "kalshi", "MDPIPE_GATHER__DISCOVERY_STATUSES": '["open", "paused"]'}
    cfg = load_config(environ=environ, use_infra_state=False)
    assert Listings("http://x").statuses(cfg.gather.discovery_statuses) == ["open", "paused"]
