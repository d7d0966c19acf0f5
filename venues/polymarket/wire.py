"""Wire structs of Polymarket's CLOB ``market`` WebSocket channel, its subscribe frames, heartbeat and limits.

Sources (tags as in ``/work/shared/venues.md``: [doc] official docs, [sdk] official SDK, [3p] third party, [guess]):

- Endpoint ``wss://ws-subscriptions-clob.polymarket.com/ws/market``, no authentication [doc].
- Subscribe: the first frame ``{"type":"market","assets_ids":[...],"custom_feature_enabled":bool}``; later frames
  ``{"operation":"subscribe"|"unsubscribe","assets_ids":[...]}`` [doc]. No ack, no subscription id, no documented
  error schema [doc by absence]; re-subscribing an asset already subscribed is rejected [sdk comment].
- Heartbeat: the client sends the text ``PING`` every 10 s, the server answers ``PONG`` (text, not JSON) [doc]; the
  official Rust SDK pings every 5 s and gives up after 15 s without a PONG [sdk]: :data:`PING_INTERVAL_S`,
  :data:`PONG_TIMEOUT_S`.
- Limits, all undocumented: updates stop beyond about 500 assets per connection [3p: nautilus_trader PR #2915]:
  :data:`MAX_ASSETS_PER_CONNECTION`; frames with thousands of ids make the server close the socket [3p:
  rs-clob-client-v2 PR #117]: at most :data:`MAX_IDS_PER_FRAME` ids per frame [3p]; many simultaneous connects get
  HTTP 429 [3p: nautilus_trader #2238].
- A received frame is ONE JSON object or a JSON ARRAY of them [sdk: both official SDKs parse both]; each carries
  ``event_type``. Numbers are decimal strings, ``timestamp`` an epoch-milliseconds string [doc]; the decoders also
  take JSON numbers (``strict=False``) and keep prices and sizes exact (``Decimal``). Unknown fields are ignored.

Messages (field lists [doc] unless marked):

- ``book``: ``asset_id, market`` (condition id), ``bids``/``asks`` (``[{price, size}]``, order not guaranteed
  [doc example ascending, sdk comment descending]), ``timestamp``, ``hash``; extras seen: ``tick_size``,
  ``last_trade_price`` (only in the first book after connecting [3p]), ``min_order_size``, ``neg_risk`` [sdk].
- ``price_change`` (schema of 2025-09-15): ``market, timestamp, price_changes[]``; entry ``asset_id, price, size``
  (the level's NEW size, ``"0"`` removes it), ``side`` (BUY = bids, SELL = asks), ``hash``, ``best_bid``,
  ``best_ask``. One message may carry entries of both tokens of a condition [doc example].
- ``last_trade_price``: ``asset_id, market, price, size, side, fee_rate_bps, timestamp``; ``transaction_hash`` seen
  [3p, optional in the py-sdk model]. No trade id.
- ``tick_size_change``: ``asset_id, market, old_tick_size, new_tick_size, timestamp``.
- ``best_bid_ask``, ``new_market``, ``market_resolved`` come only with ``custom_feature_enabled`` (not used by this
  collector: decoded as :class:`Head` and counted as ignored).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from schemas.codec import SchemaError

__all__ = [
    "BOOK",
    "KIND_BY_EVENT",
    "LAST_TRADE_PRICE",
    "MAX_ASSETS_PER_CONNECTION",
    "MAX_IDS_PER_FRAME",
    "PING",
    "PING_INTERVAL_S",
    "PONG",
    "PONG_TIMEOUT_S",
    "PRICE_CHANGE",
    "TICK_SIZE_CHANGE",
    "WS_URL",
    "BookMsg",
    "Head",
    "LastTradePriceMsg",
    "Level",
    "MarketSubscribe",
    "PriceChange",
    "PriceChangeMsg",
    "SubscriptionUpdate",
    "TickSizeChangeMsg",
    "decode",
    "encode_subscribe",
    "encode_update",
    "split_frame",
]

WS_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"  # [doc]
PING = b"PING"  # [doc] text frame
PONG = b"PONG"  # [doc] text frame, not JSON
PING_INTERVAL_S = 10.0  # [doc] "Send PING every 10 seconds"
PONG_TIMEOUT_S = 15.0  # [sdk] Polymarket/rs-clob-client ws config; the server's own timeout is undocumented
MAX_ASSETS_PER_CONNECTION = 500  # [3p] updates stop beyond ~500 assets per connection
MAX_IDS_PER_FRAME = 100  # [3p] larger subscribe frames have made the server close the socket

BOOK = "book"
PRICE_CHANGE = "price_change"
LAST_TRADE_PRICE = "last_trade_price"
TICK_SIZE_CHANGE = "tick_size_change"

# venue event_type -> RawFrame kind (a price_change becomes one "delta" frame per entry)
KIND_BY_EVENT: dict[str, str] = {
    BOOK: "snapshot",
    PRICE_CHANGE: "delta",
    LAST_TRADE_PRICE: "trade",
    TICK_SIZE_CHANGE: "lifecycle",
}


class Head(msgspec.Struct):
    """What every message carries: its type (and, for the per-asset ones, the token)."""

    event_type: str = ""
    asset_id: str = ""


class Level(msgspec.Struct):
    price: Decimal
    size: Decimal


class BookMsg(msgspec.Struct):
    asset_id: str
    timestamp: int
    market: str = ""
    bids: list[Level] = []
    asks: list[Level] = []
    hash: str = ""
    tick_size: Decimal | None = None
    last_trade_price: Decimal | None = None
    min_order_size: Decimal | None = None
    neg_risk: bool | None = None
    event_type: str = BOOK


class PriceChange(msgspec.Struct):
    """One entry of a ``price_change``: the level ``(side, price)`` of ``asset_id`` now holds ``size``."""

    asset_id: str
    price: Decimal
    size: Decimal
    side: Literal["BUY", "SELL"]
    hash: str = ""
    best_bid: Decimal | None = None
    best_ask: Decimal | None = None


class PriceChangeMsg(msgspec.Struct):
    timestamp: int
    price_changes: list[PriceChange]
    market: str = ""
    event_type: str = PRICE_CHANGE


class PriceChangeRaw(msgspec.Struct):
    """A ``price_change`` with its entries kept verbatim (the session splits it into one frame per entry)."""

    timestamp: int
    price_changes: list[msgspec.Raw]
    market: str = ""


class LastTradePriceMsg(msgspec.Struct):
    asset_id: str
    price: Decimal
    size: Decimal
    timestamp: int
    side: Literal["BUY", "SELL", ""] = ""
    market: str = ""
    fee_rate_bps: Decimal | None = None
    transaction_hash: str = ""
    event_type: str = LAST_TRADE_PRICE


class TickSizeChangeMsg(msgspec.Struct):
    asset_id: str
    old_tick_size: Decimal
    new_tick_size: Decimal
    timestamp: int
    market: str = ""
    event_type: str = TICK_SIZE_CHANGE


class MarketSubscribe(msgspec.Struct, omit_defaults=True):
    """The first frame on a connection [doc]; ``initial_dump`` (default true: a ``book`` per asset) is in the
    AsyncAPI only [doc asyncapi], so it is sent only when set."""

    assets_ids: list[str]
    type: str
    custom_feature_enabled: bool
    initial_dump: bool | None = None


class SubscriptionUpdate(msgspec.Struct, omit_defaults=True):
    """Later frames: add or remove assets on an open connection [doc]."""

    operation: Literal["subscribe", "unsubscribe"]
    assets_ids: list[str]


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    BOOK: msgspec.json.Decoder(BookMsg, strict=False),
    PRICE_CHANGE: msgspec.json.Decoder(PriceChangeMsg, strict=False),
    LAST_TRADE_PRICE: msgspec.json.Decoder(LastTradePriceMsg, strict=False),
    TICK_SIZE_CHANGE: msgspec.json.Decoder(TickSizeChangeMsg, strict=False),
}
_head = msgspec.json.Decoder(Head)
_many = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
price_change_raw = msgspec.json.Decoder(PriceChangeRaw, strict=False)
price_change_entry = msgspec.json.Decoder(PriceChange, strict=False)


def split_frame(data: bytes) -> list[bytes]:
    """The messages of one received frame: an object is one message, an array its items (verbatim bytes)."""
    stripped = data.lstrip()
    if stripped[:1] == b"[":
        try:
            return [bytes(item) for item in _many.decode(data)]
        except msgspec.DecodeError as exc:
            raise SchemaError(f"polymarket frame: {exc}") from None
    return [data]


def head(message: bytes) -> Head:
    try:
        return _head.decode(message)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"polymarket message: {exc}") from None


def decode(event_type: str, message: bytes) -> Any:
    """The struct of one message of ``event_type`` (``SchemaError`` if it does not fit)."""
    decoder = _DECODERS.get(event_type)
    if decoder is None:
        raise SchemaError(f"polymarket: no decoder for event_type {event_type!r}")
    try:
        return decoder.decode(message)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"polymarket {event_type}: {exc}") from None


def encode_subscribe(assets: list[str], *, custom_features: bool = False, initial_dump: bool | None = None) -> bytes:
    return _encoder.encode(MarketSubscribe(assets, "market", custom_features, initial_dump))


def encode_update(operation: Literal["subscribe", "unsubscribe"], assets: list[str]) -> bytes:
    return _encoder.encode(SubscriptionUpdate(operation, assets))
