"""Kalshi's WebSocket channels and envelope types: the one declaration the gatherer's session, the wire decoders and
the emulator share (no imports, so looking the venue up stays cheap)."""

from __future__ import annotations

__all__ = [
    "CHANNELS",
    "EVENT_FEE_UPDATE",
    "EVENT_LIFECYCLE",
    "MARKET_LIFECYCLE",
    "ORDERBOOK_DELTA",
    "ORDERBOOK_SNAPSHOT",
    "TICKER",
    "TRADE",
]

# market-data channels (each also the envelope type of its messages)
ORDERBOOK_DELTA = "orderbook_delta"
TICKER = "ticker"
TRADE = "trade"
MARKET_LIFECYCLE = "market_lifecycle_v2"  # unfiltered: every market's lifecycle, no market list
# envelope types without a channel of their own
ORDERBOOK_SNAPSHOT = "orderbook_snapshot"  # on the orderbook_delta channel
EVENT_LIFECYCLE = "event_lifecycle"  # on the lifecycle channel
EVENT_FEE_UPDATE = "event_fee_update"  # on the lifecycle channel

# what a gatherer subscribes by default (gather.channels)
CHANNELS: tuple[str, ...] = (ORDERBOOK_DELTA, TRADE, TICKER, MARKET_LIFECYCLE)
