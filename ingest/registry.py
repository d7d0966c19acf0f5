"""Market registry (sans-I/O): which markets the gatherer holds, decided from lifecycle messages and REST listings.

For a venue whose discovery is :class:`venues.interface.StatusListings` (REST listings filtered by market status,
look-ups by ticker, a lifecycle channel announcing changes); the venue supplies the vocabulary -- which statuses are
held, which lifecycle types imply which status, the reference data of a listed market -- and this module decides.

Every gatherer holds every market that can still produce market data, and all gatherers must decide alike (a
market released by all of them at once is data lost by all of them at once). Inputs are the venue's two views:
lifecycle messages, received over the WebSocket as they happen, and REST objects from discovery listings and
targeted look-ups by ticker, which lag the WebSocket.

**Holding.** A market whose status the venue says holds (:meth:`StatusListings.holds`) is held, any other is
released. A lifecycle type the venue maps to a status (:meth:`StatusListings.lifecycle_status`) changes holding like
that status; every other type changes nothing about holding (the gatherer stores, counts and logs them). A REST
status the venue does not know is kept as held (holding a market too long costs one subscription slot; releasing one
too early loses its data everywhere).

**Which view is newer.** Each lifecycle change of a market is remembered with its receive time (``recv_ns``, the
gatherer's wall clock). A REST object for that market is *stale* when its request was sent less than ``rest_lag_ns``
(config ``gather.rest_lag_s``, default 60 s, twice the REST lag venues show) after that change: the
lifecycle-derived status stands in for the object's status, for holding and for the published reference data. A
request sent at least ``rest_lag_ns`` after the change is newer and its status applies (so a market whose REST
status still disagrees after the lag follows REST, e.g. a released market REST still lists as live is held again:
harmless, where the opposite mistake loses data). Changes older than the lag carry no information and are pruned.

**Listings only release what they asked about.** Discovery lists every status a gatherer holds
(``gather.discovery_statuses``). A held market absent from the complete listing may have moved between two
filtered listings or be REST-lagged; it is only a *candidate* (:meth:`MarketRegistry.unlisted`). The gatherer
looks candidates up by ticker (no status filter) and the registry releases one only when the look-up shows a
release status that is not stale, or when the market is absent from two look-ups at least ``rest_lag_ns`` apart
(the venue no longer knows it). A listing or look-up that fails releases nothing (the caller simply does not apply
it).

Memory per market: one dict entry (ticker -> last published status, interned); recent changes and absences live
in small dicts bounded by the lag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.markets import MarketRef
from venues.interface import StatusListings

__all__ = ["BoundedLabels", "Changes", "MarketRegistry"]


class BoundedLabels:
    """Metric label values for open-ended strings (lifecycle types): the first ``limit`` distinct ones, then
    ``other``. ``label()`` also says whether this value is seen for the first time (to log it once)."""

    def __init__(self, limit: int = 32, empty: str = "none") -> None:
        self.limit = limit
        self.empty = empty
        self._seen: set[str] = set()
        self._overflow: set[str] = set()

    def label(self, value: str) -> tuple[str, bool]:
        if value in self._seen:
            return value or self.empty, False
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value or self.empty, True
        first = value not in self._overflow and len(self._overflow) < 10_000
        if first:
            self._overflow.add(value)
        return "other", first


@dataclass(slots=True)
class Changes:
    """What the caller must do after applying REST objects: subscribe, unsubscribe, publish."""

    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    refs: list[MarketRef] = field(default_factory=list)
    stale: int = 0  # REST statuses overridden by a newer lifecycle change
    unknown_statuses: list[str] = field(default_factory=list)  # REST statuses outside both vocabularies

    def extend(self, other: Changes) -> None:
        self.add += other.add
        self.remove += other.remove
        self.refs += other.refs
        self.stale += other.stale
        self.unknown_statuses += other.unknown_statuses


class MarketRegistry:
    """Held markets, the recent lifecycle changes that outrank REST, and look-up absences (see module docstring).

    All times are nanoseconds on the gatherer's wall clock, passed in by the caller.
    """

    def __init__(self, rules: StatusListings, rest_lag_s: float = 60.0) -> None:
        self.rules = rules  # the venue's vocabulary: statuses held, lifecycle types, reference data
        self.rest_lag_ns = int(rest_lag_s * 1e9)
        self.held: dict[str, str] = {}  # held market -> status of its last published MarketRef ("" = none yet)
        self._changes: dict[str, tuple[int, str]] = {}  # market -> (recv_ns, status) of its last lifecycle change
        self._absent: dict[str, int] = {}  # held market -> request time of the first look-up that did not list it
        self._interned: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.held)

    def __contains__(self, market: str) -> bool:
        return market in self.held

    def _intern(self, s: str) -> str:
        return self._interned.setdefault(s, s)

    def _recent(self, market: str, at_ns: int) -> str | None:
        """The lifecycle status that outranks a REST view requested at ``at_ns`` (None when REST is newer)."""
        change = self._changes.get(market)
        if change is None:
            return None
        if at_ns < change[0] + self.rest_lag_ns:
            return change[1]
        del self._changes[market]  # older than the lag: REST is authoritative again
        return None

    def last_change(self, market: str) -> tuple[int, str] | None:
        """The market's last lifecycle change still remembered, as (receive time, status), or None."""
        return self._changes.get(market)

    def prune(self, now_ns: int) -> None:
        """Forget lifecycle changes older than the lag (they no longer outrank anything)."""
        horizon = now_ns - self.rest_lag_ns
        for market in [t for t, (at, _) in self._changes.items() if at <= horizon]:
            del self._changes[market]

    # -- lifecycle -----------------------------------------------------------------------------
    def apply_lifecycle(self, market: str, event_type: str, recv_ns: int) -> tuple[bool, bool]:
        """Apply one lifecycle message of ``market``. Returns (subscribe it, unsubscribe it).

        Only the types the venue maps to a status change anything; other types return (False, False).
        """
        status = self.rules.lifecycle_status(event_type)
        if status is None:
            return False, False
        if len(self._changes) > 100_000:
            self.prune(recv_ns)
        self._changes[market] = (recv_ns, status)
        self._absent.pop(market, None)
        held = market in self.held
        if self.rules.holds(status):
            if held:
                return False, False
            self.held[market] = ""
            return True, False
        if held:
            del self.held[market]
            return False, True
        return False, False

    # -- REST ----------------------------------------------------------------------------------
    def apply_listing(self, markets: Sequence[Any], requested_ns: int, seen: set[str] | None = None) -> Changes:
        """Apply REST objects from a response whose request was sent at ``requested_ns``.

        Used for discovery pages, refreshes and look-ups alike: each object's status (unless stale) decides holding.
        Objects are the venue's listed markets (``ticker``, ``status``, see :meth:`StatusListings.page`). Listed
        tickers are added to ``seen`` (for :meth:`unlisted`).
        """
        rules = self.rules
        out = Changes()
        for m in markets:
            t = m.ticker
            if seen is not None:
                seen.add(t)
            self._absent.pop(t, None)
            status = self._recent(t, requested_ns)
            if status is None:
                status = m.status
                if not rules.known_status(status):
                    out.unknown_statuses.append(status)
            elif status != m.status:
                out.stale += 1
            published = self.held.get(t)
            if published != status:
                out.refs.append(rules.market_ref(m, requested_ns, status))
            if rules.holds(status):
                if published is None:
                    out.add.append(t)
                self.held[t] = self._intern(status)
            elif published is not None:
                out.remove.append(t)
                del self.held[t]
        return out

    def unlisted(self, seen: set[str], now_ns: int) -> list[str]:
        """After COMPLETE listings of every held status: held markets they did not show, to be looked up by ticker.

        Markets with a lifecycle change within the lag are left out (any REST view of them would be stale)."""
        return [t for t in self.held if t not in seen and self._recent(t, now_ns) is None]

    def apply_lookup(self, asked: list[str], markets: Sequence[Any], requested_ns: int) -> Changes:
        """Apply a ``tickers=`` look-up of ``asked``: listed ones by their status; a held one missing from it is
        released when it was also missing from a look-up at least the lag earlier (and has no recent change)."""
        listed: set[str] = set()
        out = self.apply_listing(markets, requested_ns, listed)
        for t in asked:
            if t in listed or t not in self.held or self._recent(t, requested_ns) is not None:
                continue
            first = self._absent.get(t)
            if first is None:
                self._absent[t] = requested_ns
            elif requested_ns - first >= self.rest_lag_ns:
                del self._absent[t]
                del self.held[t]
                out.remove.append(t)
        return out
