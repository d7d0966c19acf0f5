"""Market registry (sans-I/O): which markets the gatherer should hold, from REST discovery and lifecycle events.

Statuses come in two vocabularies: the REST filter (``unopened|open|paused|closed|settled``) and the
response/lifecycle one (``initialized|inactive|active|closed|determined|disputed|amended|finalized`` and the
lifecycle ``event_type`` values). :func:`is_live` maps both: open/active/paused/inactive/activated/deactivated
are held (a paused market can resume), closed/settled/determined/finalized/... are released.
Each market's reference data becomes a :class:`schemas.markets.MarketRef` for the compacted ``markets`` topic;
only changes are republished. Memory per market: one dict entry (ticker -> status string, interned).
"""

from __future__ import annotations

import calendar
import time

import msgspec

from schemas.kalshi import LifecycleMsg
from schemas.markets import MarketRef

__all__ = ["LIVE_STATUSES", "MarketRegistry", "RestMarket", "RestPage", "is_live", "market_ref"]

LIVE_STATUSES = frozenset({"open", "active", "paused", "inactive", "activated", "deactivated"})
# Lifecycle event types that change nothing about holding a market.
_NEUTRAL_EVENTS = frozenset({"close_date_updated", "price_level_structure_updated", "metadata_updated"})


def is_live(status: str) -> bool:
    """True when a market in ``status`` (either vocabulary, or a lifecycle event type) should be subscribed."""
    return status in LIVE_STATUSES


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


def market_ref(m: RestMarket, now_ns: int | None = None) -> MarketRef:
    return MarketRef(
        venue="kalshi",
        ticker=m.ticker,
        event_ticker=m.event_ticker,
        market_id=m.id,
        title=m.title,
        status=m.status,
        open_time_ms=_rfc3339_ms(m.open_time),
        close_time_ms=_rfc3339_ms(m.close_time),
        price_level_structure=m.price_level_structure,
        price_ranges=bytes(m.price_ranges).decode(),
        updated_ns=now_ns if now_ns is not None else time.time_ns(),
    )


class MarketRegistry:
    """Held markets and their last known status; tells the caller what to add, remove and publish."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self._interned: dict[str, str] = {}
        self.ended: set[str] = set()

    def __len__(self) -> int:
        return len(self.status)

    def _intern(self, s: str) -> str:
        return self._interned.setdefault(s, s)

    def apply_listing(
        self, markets: list[RestMarket], now_ns: int, seen: set[str] | None = None
    ) -> tuple[list[str], list[str], list[MarketRef]]:
        """Apply one page of discovered markets (or a refresh of some tickers).

        Returns (to add, to remove, refs to publish). Tickers are added to ``seen`` for :meth:`release_unseen`.
        """
        add: list[str] = []
        remove: list[str] = []
        refs: list[MarketRef] = []
        for m in markets:
            if seen is not None:
                seen.add(m.ticker)
            old = self.status.get(m.ticker)
            if old != m.status:
                refs.append(market_ref(m, now_ns))
            if is_live(m.status) and m.ticker not in self.ended:
                if old is None:
                    add.append(m.ticker)
                self.status[m.ticker] = self._intern(m.status)
            elif old is not None:
                remove.append(m.ticker)
                del self.status[m.ticker]
        return add, remove, refs

    def release_unseen(self, seen: set[str]) -> list[str]:
        """After a COMPLETE open listing: release held markets it did not contain."""
        gone = [t for t in self.status if t not in seen]
        for t in gone:
            del self.status[t]
        return gone

    def apply_lifecycle(self, market: str, lc: LifecycleMsg) -> tuple[bool, bool]:
        """Apply one ``market_lifecycle_v2`` message. Returns (add it, remove it).

        The caller refreshes the market's reference data over REST (lifecycle bodies are partial).
        A market released by lifecycle is not re-added by a stale listing (``status=open`` can lag ~30 s).
        """
        event = lc.event_type
        if event in _NEUTRAL_EVENTS or event == "created":
            return False, False  # created markets are held from "activated" on
        held = market in self.status
        if is_live(event):
            self.ended.discard(market)
            self.status[market] = self._intern("active" if event == "activated" else "inactive")
            return not held, False
        if len(self.ended) > 100_000:
            self.ended.clear()
        self.ended.add(market)
        if held:
            del self.status[market]
            return False, True
        return False, False
