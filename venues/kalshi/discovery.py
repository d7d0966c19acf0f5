"""Kalshi market discovery, sans I/O: the status vocabulary, lifecycle types, REST ``Market`` object and the
``GET /markets`` listing and look-up requests, as :class:`venues.interface.StatusListings` (the gatherer drives it
with its venue-neutral :class:`ingest.registry.MarketRegistry`; see that module for which view wins when).

Inputs are the venue's two views: ``market_lifecycle_v2`` messages over the WebSocket, and REST ``Market`` objects
from listings (``GET /markets?status=..&cursor=..&limit=..``) and look-ups (``GET /markets?tickers=a,b``, at most
:data:`LOOKUP_BATCH` a request), which lag the WebSocket (a listing can still say ``initialized`` ~30 s after
``activated``, or ``active`` after ``settled``).

**Statuses.** A status in :data:`HOLD_STATUSES` (``initialized``, ``inactive``, ``active`` and the filter names
``unopened``/``paused``/``open``) is held, one in :data:`RELEASE_STATUSES` (``closed``, ``determined``,
``disputed``, ``amended``, ``finalized``, ``settled``) is released; a REST status outside both sets is kept as
held (holding a market too long costs one subscription slot; releasing one too early loses its data everywhere).

**Lifecycle types** map onto the same vocabulary (:data:`LIFECYCLE_STATUS`): ``created`` -> initialized (held from
creation: the venue streams from activation, and a subscription made at creation is in place before the first
activation-time event), ``activated`` -> active, ``deactivated`` -> inactive (a paused market resumes),
``determined`` -> determined, ``settled`` -> finalized. A market that closes at its close time gets no WebSocket
event: only REST releases it. Everything else -- the metadata form without ``event_type``, ``metadata_updated``,
``close_date_updated``, ``price_level_structure_updated`` and any type the venue adds later -- changes nothing about
holding (the gatherer stores, counts and logs them).

**Listings.** Discovery lists every status a gatherer holds (:data:`LISTING_STATUSES`: ``open``, ``paused`` and
``unopened``, or those of ``gather.discovery_statuses`` when set; unopened because a market is held from ``created``,
so a gatherer that started after the creation holds the same markets as one that saw it). The REST object's
``updated_time`` is not used: the spec does not say which changes move it, it is on the venue's clock at one-second
resolution.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
import urllib.parse
from typing import Any

import msgspec

from schemas.codec import SchemaError
from schemas.markets import MarketRef

__all__ = [
    "HOLD_STATUSES",
    "LIFECYCLE_STATUS",
    "LISTING_STATUSES",
    "LOOKUP_BATCH",
    "NEUTRAL_EVENTS",
    "RELEASE_STATUSES",
    "Listings",
    "RestMarket",
    "RestPage",
    "classify_event",
    "market_ref",
]

VENUE_NAME = "kalshi"
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
LOOKUP_BATCH = 100  # tickers per ``tickers=`` look-up
# The listing filters a pass may use (every one a held status), ``open`` always among them: the default.
LISTING_STATUSES = ("open", "paused", "unopened")


def classify_event(event_type: str) -> str:
    """``hold`` | ``release`` | ``neutral`` | ``unknown`` for a lifecycle ``event_type``."""
    status = LIFECYCLE_STATUS.get(event_type)
    if status is not None:
        return "hold" if status in HOLD_STATUSES else "release"
    return "neutral" if event_type in NEUTRAL_EVENTS else "unknown"


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


_page = msgspec.json.Decoder(RestPage)


# The venue's own form of a REST time (RFC 3339, zero-padded, to the second and beyond): read without strptime, which
# costs several times more and runs for two times of every listed market, on the gatherer's event loop, in
# pages of a thousand at every discovery pass (the first one, at start-up, while every subscription's snapshot arrives)
_RFC3339_SECONDS = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)")


# Times read before (their first 19 characters, all the reading looks at) -> their Unix ms: every discovery pass
# lists every market again with the same two times, and the markets of one event share theirs. Bounded (cleared
# when full): a miss costs a parse, never a wrong answer.
_TIMES: dict[str, int | None] = {}
_TIMES_MAX = 1 << 16


def _rfc3339_ms(text: str) -> int | None:
    """Unix ms of an RFC 3339 time's whole seconds (fractions and the offset ignored: the venue writes UTC); None
    when it is no such time."""
    seconds = text[:19]
    ms = _TIMES.get(seconds, _TIMES)
    if ms is _TIMES:
        if len(_TIMES) >= _TIMES_MAX:
            _TIMES.clear()
        ms = _TIMES[seconds] = _parse_rfc3339_ms(seconds)
    return ms  # type: ignore[return-value]


def _parse_rfc3339_ms(text: str) -> int | None:
    """:func:`_rfc3339_ms` of ``text``, parsed (only its first 19 characters are read)."""
    if not text:
        return None
    m = _RFC3339_SECONDS.match(text)
    if m is not None:
        try:
            return int(dt.datetime(*map(int, m.groups()), tzinfo=dt.UTC).timestamp()) * 1000
        except ValueError:
            pass  # out of range here (a leap second, a 30 February): strptime's rules decide, as before
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) * 1000
    except ValueError:
        return None


def market_ref(m: RestMarket, now_ns: int | None = None, status: str | None = None) -> MarketRef:
    """The reference data published for ``m`` (``status`` overrides the object's, e.g. a newer lifecycle status)."""
    return MarketRef(
        venue=VENUE_NAME,
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


class Listings:
    """``GET /markets`` of one REST base URL as :class:`venues.interface.StatusListings` (see module docstring)."""

    kind = "status_listings"
    lookup_batch = LOOKUP_BATCH
    listing_statuses = LISTING_STATUSES

    def __init__(self, rest_url: str, page_limit: int = 1000) -> None:
        self.base = f"{rest_url.rstrip('/')}/markets"
        self.page_limit = page_limit
        # a look-up answers at most one page (limit=page_limit): asking for more tickers than that would leave the
        # ones past the page unanswered, and an unanswered held market counts as absent (released a lag later)
        self.lookup_batch = max(1, min(LOOKUP_BATCH, page_limit))

    def statuses(self, requested: list[str]) -> list[str]:
        if not requested:
            return list(LISTING_STATUSES)
        if "open" not in requested or any(s not in LISTING_STATUSES for s in requested):
            raise ValueError(f"must include open, each one of {', '.join(LISTING_STATUSES)} ([] = all of them)")
        return list(requested)

    def listing_url(self, status: str, cursor: str = "") -> str:
        query = {"limit": str(self.page_limit), "status": status}
        if cursor:
            query["cursor"] = cursor
        return f"{self.base}?{urllib.parse.urlencode(query)}"

    def lookup_url(self, tickers: list[str]) -> str:
        return f"{self.base}?{urllib.parse.urlencode({'limit': str(self.page_limit), 'tickers': ','.join(tickers)})}"

    def page(self, body: bytes) -> tuple[list[RestMarket], str]:
        try:
            page = _page.decode(body)
        except msgspec.DecodeError as exc:
            raise SchemaError(f"markets page: {exc}") from None
        return page.markets, page.cursor or ""

    def lifecycle_of(self, msg: Any) -> tuple[str, str]:
        return msg.market_ticker, msg.event_type

    def lifecycle_status(self, event_type: str) -> str | None:
        return LIFECYCLE_STATUS.get(event_type)

    def classify(self, event_type: str) -> str:
        return classify_event(event_type)

    def holds(self, status: str) -> bool:
        return status not in RELEASE_STATUSES

    def known_status(self, status: str) -> bool:
        return status in HOLD_STATUSES or status in RELEASE_STATUSES

    def market_ref(self, market: RestMarket, updated_ns: int, status: str) -> MarketRef:
        return market_ref(market, updated_ns, status)
