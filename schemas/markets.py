"""Market reference data (compacted topic ``markets``, key = ``venue:ticker``), upserted by the sink into ``markets``
(one row per venue and ticker)."""

from __future__ import annotations

from schemas.codec import Versioned, make_codec

__all__ = ["MarketRef", "decode_market", "encode_market"]


class MarketRef(Versioned, kw_only=True):
    venue: str
    ticker: str
    event_ticker: str = ""
    market_id: str = ""
    title: str = ""
    status: str = ""
    open_time_ms: int | None = None
    close_time_ms: int | None = None
    price_level_structure: str = ""
    price_ranges: str = ""  # JSON list of {start, end, step}
    updated_ns: int = 0


encode_market, decode_market = make_codec(MarketRef, "MarketRef")
