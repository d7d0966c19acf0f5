"""An invented venue's :class:`venues.interface.StatusListings` for the gatherer's venue-neutral tests: statuses
``live`` and ``asleep`` listed and held, ``gone`` released; lifecycle ``born`` -> live, ``died`` -> gone; listings
are JSON pages ``{"markets": [[ticker, status], ...], "cursor": ...}`` under the REST base, look-ups two tickers a
request."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from schemas.markets import MarketRef

__all__ = ["Listed", "ToyListings"]


@dataclass
class Listed:
    ticker: str
    status: str


class ToyListings:
    kind = "status_listings"
    lookup_batch = 2
    listing_statuses = ("live", "asleep")

    def __init__(self, rest_url: str = "toy://rest") -> None:
        self.base = rest_url.rstrip("/")

    def statuses(self, requested: list[str]) -> list[str]:
        return list(requested or self.listing_statuses)

    def listing_url(self, status: str, cursor: str = "") -> str:
        return f"{self.base}/list?{urllib.parse.urlencode({'status': status, 'cursor': cursor})}"

    def lookup_url(self, tickers: list[str]) -> str:
        return f"{self.base}/look?{urllib.parse.urlencode({'tickers': ','.join(tickers)})}"

    def page(self, body: bytes) -> tuple[list[Any], str]:
        data = json.loads(body)
        return [Listed(t, s) for t, s in data["markets"]], data["cursor"]

    def lifecycle_of(self, msg: Any) -> tuple[str, str]:
        return msg["market"], msg["what"]

    def lifecycle_status(self, event_type: str) -> str | None:
        return {"born": "live", "died": "gone"}.get(event_type)

    def classify(self, event_type: str) -> str:
        return {"born": "hold", "died": "release"}.get(event_type, "unknown")

    def holds(self, status: str) -> bool:
        return status != "gone"

    def known_status(self, status: str) -> bool:
        return status in ("live", "asleep", "gone")

    def market_ref(self, market: Any, updated_ns: int, status: str) -> MarketRef:
        return MarketRef(venue="toy", ticker=market.ticker, status=status, updated_ns=updated_ns)
