"""The emulator's Kalshi REST API (trade-api v2), sans I/O: market listings and order books over the emulator's
market table and books.

Routes under the REST base ``/trade-api/v2`` (:data:`REST_BASE`): ``GET /markets`` (``limit`` 1..1000, default
100; ``status`` filter in the venue's vocabulary; ``cursor`` paging; ``tickers=`` look-up by ticker, no paging),
``GET /markets/{ticker}/orderbook`` (``depth``) and ``GET /markets/orderbooks?tickers=`` (1 to 100). Listings
report statuses as the market table's lagging REST view has them (``rest_lag_ms``) at the venue clock, and a listing
page carrying a cursor answers 503 while the ``failpage`` fault is armed. A :class:`RestApi` is the profile's
``rest_handler`` (:class:`venues.interface.EmulatorProfile`).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol
from urllib.parse import unquote

from venue_sim.book import Books
from venue_sim.markets import (
    ABSENT,
    DAY_MS,
    ST_ACTIVE,
    ST_CLOSED,
    ST_DETERMINED,
    ST_FINALIZED,
    ST_INACTIVE,
    ST_INITIALIZED,
    MarketTable,
)
from venues.kalshi.emulator.levels import rest_orderbook
from venues.kalshi.emulator_wire import PRICE, rfc3339

__all__ = ["FILTER_STATUSES", "REST_BASE", "STATUS_NAMES", "RestApi", "rest_market"]

REST_BASE = "/trade-api/v2"
# Response vocabulary of the real API by status code (disputed/amended are never produced by the emulator).
STATUS_NAMES: tuple[str, ...] = ("initialized", "inactive", "active", "closed", "determined", "finalized")
# Query filter vocabulary -> response statuses it selects.
FILTER_STATUSES: dict[str, tuple[int, ...]] = {
    "unopened": (ST_INITIALIZED,),
    "open": (ST_ACTIVE,),
    "paused": (ST_INACTIVE,),
    "closed": (ST_CLOSED, ST_DETERMINED),
    "settled": (ST_FINALIZED,),
}


class VenueContext(Protocol):
    """What a REST request may ask of the emulator (its server)."""

    def venue_ms(self) -> int: ...
    def fail_page(self, detail: str) -> bool: ...


@functools.lru_cache(maxsize=4096)
def _time(ms: int) -> str:
    return rfc3339(ms)


def rest_market(table: MarketTable, i: int, top: tuple[int, int, int, int, int], status: int | None = None) -> str:
    """REST ``Market`` JSON object of market ``i``. ``top`` = (yes_bid, yes_ask, last_price cents, volume,
    open_interest); ``status`` overrides the live status (the lagging REST view)."""
    yes_bid, yes_ask, last, volume, oi = top
    status = table.status[i] if status is None else status
    open_ms = table.open_ms(i)
    close_ms = table.close_ms(i)
    opened = _time(open_ms)
    closes = _time(close_ms)
    vol = f"{volume // 100}.{volume % 100:02d}"
    return (
        f'{{"ticker":"{table.ticker(i)}","event_ticker":"{table.event_ticker(i)}","market_type":"binary",'
        f'"title":"Simulated market {i}","subtitle":"","yes_sub_title":"Outcome {i} happens",'
        f'"no_sub_title":"Outcome {i} does not happen","status":"{STATUS_NAMES[status]}",'
        f'"created_time":"{opened}","updated_time":"{opened}","open_time":"{opened}","close_time":"{closes}",'
        f'"expected_expiration_time":"{closes}","latest_expiration_time":"{_time(close_ms + 7 * DAY_MS)}",'
        f'"settlement_timer_seconds":300,"result":"{table.results.get(i, "")}","can_close_early":true,'
        f'"rules_primary":"Resolves Yes if outcome {i} happens.","rules_secondary":"",'
        f'"price_level_structure":"linear_cent",'
        f'"price_ranges":[{{"start":"0.0000","end":"1.0000","step":"0.0100"}}],'
        f'"yes_bid_dollars":"{PRICE[yes_bid]}","yes_ask_dollars":"{PRICE[yes_ask]}",'
        f'"no_bid_dollars":"{PRICE[100 - yes_ask]}","no_ask_dollars":"{PRICE[100 - yes_bid]}",'
        f'"last_price_dollars":"{PRICE[last]}","previous_yes_bid_dollars":"{PRICE[yes_bid]}",'
        f'"previous_yes_ask_dollars":"{PRICE[yes_ask]}","previous_price_dollars":"{PRICE[last]}",'
        f'"volume_fp":"{vol}","volume_24h_fp":"{vol}","open_interest_fp":"{oi // 100}.{oi % 100:02d}",'
        f'"liquidity_dollars":"0.0000","notional_value_dollars":"1.0000","response_price_units":"usd_cent"}}'
    )


def _not_found(message: str) -> tuple[int, Any]:
    return 404, {"error": {"code": "not_found", "message": message}}


class RestApi:
    """``(path, query, venue) -> (status, body) | None`` over one run's market table and books."""

    def __init__(self, markets: MarketTable, books: Books) -> None:
        self.markets = markets
        self.books = books

    def __call__(self, path: str, query: dict[str, str], venue: VenueContext) -> tuple[int, Any] | None:
        if path == f"{REST_BASE}/markets":
            return self.markets_page(query, venue)
        if path == f"{REST_BASE}/markets/orderbooks":
            return self.orderbooks(query)
        if path.startswith(f"{REST_BASE}/markets/") and path.endswith("/orderbook"):
            ticker = unquote(path[len(REST_BASE) + 9 : -len("/orderbook")])
            return self.orderbook(ticker, query)
        return None

    def markets_page(self, query: dict[str, str], venue: VenueContext) -> tuple[int, Any]:
        limit = int(query.get("limit", "100") or 100)
        if not 0 <= limit <= 1000:
            raise ValueError("limit must be in 0..1000")
        limit = limit or 100
        status = query.get("status", "")
        if status and status not in FILTER_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FILTER_STATUSES)}")
        codes = FILTER_STATUSES[status] if status else None
        cursor = query.get("cursor", "")
        if cursor and venue.fail_page(cursor):
            return 503, {"error": {"code": "service_unavailable", "message": "page failed (fault)"}}
        start = int(cursor) if cursor else 0
        if start < 0:
            raise ValueError("bad cursor")
        markets = self.markets
        view = markets.rest_view(venue.venue_ms())  # REST trails the WebSocket by rest_lag_ms
        tickers = query.get("tickers", "")
        if tickers:
            found = [markets.index(t) for t in tickers.split(",")]
            idx = [
                i
                for i in found
                if i is not None and (st := markets.rest_status(i, view)) != ABSENT and (codes is None or st in codes)
            ]
            nxt = -1
        else:
            idx, nxt = markets.page(codes, start, limit, view)
        books = self.books
        items = []
        for i in idx:
            yes_bid, yes_ask, _, _ = books.top(i)
            last = books.last_price[i] if books.touched[i] else books.mid(i)
            top = (yes_bid, yes_ask, last, books.volume[i], books.open_interest[i])
            items.append(rest_market(markets, i, top, view.get(i)))
        body = '{"markets":[' + ",".join(items) + '],"cursor":' + json.dumps("" if nxt < 0 else str(nxt)) + "}"
        return 200, body.encode()

    def _book(self, i: int, depth: int) -> dict[str, object]:
        view = self.books.peek(i)
        return rest_orderbook(view.yes, view.no, depth)

    def orderbook(self, ticker: str, query: dict[str, str]) -> tuple[int, Any]:
        i = self.markets.index(ticker)
        if i is None:
            return _not_found(f"market {ticker} not found")
        depth = int(query.get("depth", "0") or 0)
        if not 0 <= depth <= 100:
            raise ValueError("depth must be in 0..100")
        return 200, self._book(i, depth)

    def orderbooks(self, query: dict[str, str]) -> tuple[int, Any]:
        tickers = [t for t in query.get("tickers", "").split(",") if t]
        if not 1 <= len(tickers) <= 100:
            raise ValueError("tickers: 1 to 100 comma-separated market tickers")
        books = []
        for t in tickers:
            i = self.markets.index(t)
            if i is not None:
                books.append({"ticker": t, **self._book(i, 0)})
        return 200, {"orderbooks": books}
