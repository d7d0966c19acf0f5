"""Market registry (sans-I/O): which markets the gatherer holds, decided from lifecycle messages and REST listings.

Every gatherer holds every market that can still produce market data, and all gatherers must decide alike (a
market released by all of them at once is data lost by all of them at once). Inputs are the venue's two views:

* ``market_lifecycle_v2`` messages, received over the WebSocket as they happen;
* REST ``Market`` objects from discovery listings and targeted ``tickers=`` look-ups, which lag the WebSocket
  (a listing can still say ``initialized`` ~30 s after ``activated``, or ``active`` after ``settled``).

**Holding.** A status in :data:`HOLD_STATUSES` (``initialized``, ``inactive``, ``active`` and the filter names
``unopened``/``paused``/``open``) is held, one in :data:`RELEASE_STATUSES` (``closed``, ``determined``,
``disputed``, ``amended``, ``finalized``, ``settled``) is released. Lifecycle event types map onto the same
vocabulary (:data:`LIFECYCLE_STATUS`): ``created`` -> initialized (held from creation: the venue streams from
activation, and a subscription made at creation is in place before the first activation-time event),
``activated`` -> active, ``deactivated`` -> inactive (a paused market resumes), ``determined`` -> determined,
``settled`` -> finalized. A market that closes at its close time gets no WebSocket event: only REST releases it.
Everything else -- the metadata form without ``event_type``, ``metadata_updated``, ``close_date_updated``,
``price_level_structure_updated`` and any type the venue adds later -- changes nothing about holding (the
gatherer stores, counts and logs them). A REST status outside both sets is treated the same way: kept as held
(holding a market too long costs one subscription slot; releasing one too early loses its data everywhere).

**Which view is newer.** Each lifecycle change of a market is remembered with its receive time (``recv_ns``, the
gatherer's wall clock). A REST object for that market is *stale* when its request was sent less than ``rest_lag_ns``
(config ``gather.rest_lag_s``, default 60 s, twice the ~30 s lag the venue's listings show) after that change:
the lifecycle-derived status stands in for the object's status, for holding and for the published reference
data. A request sent at least ``rest_lag_ns`` after the change is newer and its status applies (so a market whose
REST status still disagrees after the lag follows REST, e.g. a ``determined`` market REST still lists as active
is held again: harmless, where the opposite mistake loses data). The REST object's ``updated_time`` is not used:
the spec does not say which changes move it, it is on the venue's clock at one-second resolution, while the
change time is the gatherer's receive clock. Changes older than the lag carry no information and are pruned.

**Listings only release what they asked about.** Discovery lists every status a gatherer holds (``open``,
``paused`` and ``unopened`` by default: unopened because a market is held from ``created``, so a gatherer that
started after the creation holds the same markets as one that saw it). A held market absent from the complete
listing may have moved between two filtered listings or be REST-lagged; it is only a *candidate*
(:meth:`MarketRegistry.unlisted`). The gatherer looks candidates up by ticker (no status filter) and the
registry releases one only when the look-up shows a release status that is not stale, or when the market is
absent from two look-ups at least ``rest_lag_ns`` apart (the venue no longer knows it). A listing or look-up that
fails releases nothing (the caller simply does not apply it).

Memory per market: one dict entry (ticker -> last published status, interned); recent changes and absences live
in small dicts bounded by the lag.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field

import msgspec

from schemas.markets import MarketRef

__all__ = [
    "HOLD_STATUSES",
    "LIFECYCLE_STATUS",
    "NEUTRAL_EVENTS",
    "RELEASE_STATUSES",
    "BoundedLabels",
    "Changes",
    "MarketRegistry",
    "RestMarket",
    "RestPage",
    "classify_event",
    "market_ref",
]

# REST response vocabulary (initialized|inactive|active|...) plus the filter vocabulary (unopened|paused|open).
HOLD_STATUSES = frozenset({"initialized", "inactive", "active", "unopened", "paused", "open"})
RELEASE_STATUSES = frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"})
# Lifecycle event type -> the REST response status it implies.
LIFECYCLE_STATUS: dict[str, str] = {
    "created": "initialized",
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "finalized",
}
# Known lifecycle types that change nothing about holding ("" = the metadata form, which has no event_type).
NEUTRAL_EVENTS = frozenset({"", "metadata_updated", "close_date_updated", "price_level_structure_updated"})


def classify_event(event_type: str) -> str:
    """``hold`` | ``release`` | ``neutral`` | ``unknown`` for a lifecycle ``event_type``."""
    status = LIFECYCLE_STATUS.get(event_type)
    if status is not None:
        return "hold" if status in HOLD_STATUSES else "release"
    return "neutral" if event_type in NEUTRAL_EVENTS else "unknown"


def _holds(status: str) -> bool:
    """Should a market in REST/lifecycle ``status`` be held? Unknown statuses are (see module docstring)."""
    return status not in RELEASE_STATUSES


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


class RestMarket(msgspec.Struct):
    """The fields of the REST ``Market`` object the gatherer uses (the rest is ignored)."""

    ticker: str
    event_ticker: str = ""
    status: str = ""
    title: str = ""
    open_time: str = ""
    close_time: str = ""
    price_level_structure: str = ""
    price_ranges: msgspec.Raw = msgspec.Raw(b"[]")
    id: str = ""


class RestPage(msgspec.Struct):
    markets: list[RestMarket] = []
    cursor: str | None = ""


def _rfc3339_ms(text: str) -> int | None:
    if not text:
        return None
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) * 1000
    except ValueError:
        return None


def market_ref(m: RestMarket, now_ns: int | None = None, status: str | None = None) -> MarketRef:
    return MarketRef(
        venue="kalshi",
        ticker=m.ticker,
        event_ticker=m.event_ticker,
        market_id=m.id,
        title=m.title,
        status=m.status if status is None else status,
        open_time_ms=_rfc3339_ms(m.open_time),
        close_time_ms=_rfc3339_ms(m.close_time),
        price_level_structure=m.price_level_structure,
        price_ranges=bytes(m.price_ranges).decode(),
        updated_ns=now_ns if now_ns is not None else time.time_ns(),
    )


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

    def __init__(self, rest_lag_s: float = 60.0) -> None:
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

    def prune(self, now_ns: int) -> None:
        """Forget lifecycle changes older than the lag (they no longer outrank anything)."""
        horizon = now_ns - self.rest_lag_ns
        for market in [t for t, (at, _) in self._changes.items() if at <= horizon]:
            del self._changes[market]

    # -- lifecycle -----------------------------------------------------------------------------
    def apply_lifecycle(self, market: str, event_type: str, recv_ns: int) -> tuple[bool, bool]:
        """Apply one ``market_lifecycle_v2`` message of ``market``. Returns (subscribe it, unsubscribe it).

        Only the types of :data:`LIFECYCLE_STATUS` change anything; neutral and unknown types return (False, False).
        """
        status = LIFECYCLE_STATUS.get(event_type)
        if status is None:
            return False, False
        if len(self._changes) > 100_000:
            self.prune(recv_ns)
        self._changes[market] = (recv_ns, status)
        self._absent.pop(market, None)
        held = market in self.held
        if status in HOLD_STATUSES:
            if held:
                return False, False
            self.held[market] = ""
            return True, False
        if held:
            del self.held[market]
            return False, True
        return False, False

    # -- REST ----------------------------------------------------------------------------------
    def apply_listing(self, markets: list[RestMarket], requested_ns: int, seen: set[str] | None = None) -> Changes:
        """Apply REST objects from a response whose request was sent at ``requested_ns``.

        Used for discovery pages, refreshes and look-ups alike: each object's status (unless stale) decides holding.
        Listed tickers are added to ``seen`` (for :meth:`unlisted`).
        """
        out = Changes()
        for m in markets:
            t = m.ticker
            if seen is not None:
                seen.add(t)
            self._absent.pop(t, None)
            status = self._recent(t, requested_ns)
            if status is None:
                status = m.status
                if status not in HOLD_STATUSES and status not in RELEASE_STATUSES:
                    out.unknown_statuses.append(status)
            elif status != m.status:
                out.stale += 1
            published = self.held.get(t)
            if published != status:
                out.refs.append(market_ref(m, requested_ns, status))
            if _holds(status):
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

    def apply_lookup(self, asked: list[str], markets: list[RestMarket], requested_ns: int) -> Changes:
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
