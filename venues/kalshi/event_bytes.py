"""Encoded events of winning delta, ticker and trade frames without building the ``Event`` (dedup's hot path).

:func:`event_bytes` returns ``encode_event`` of :func:`venues.kalshi.messages.to_event`'s event with the two hop
stamps set, byte for byte, or None when it cannot vouch for that; the caller then takes the normaliser's path, which
also produces every error. The saving is the ``Decimal`` objects (a price or size is decoded as the text the venue
sent and written back as that text, which is what ``Decimal`` + the codec's ``decimal_format="string"`` give for a
canonical decimal) and the ``Event`` struct (the record is encoded from a tuple in the schema's field order, as the
gatherer encodes its ``RawFrame``).

A decimal is taken as text only when it is canonical (:data:`_CANONICAL`: optional minus, no leading zero, at most 6
fraction digits, not ``-0``, so the normaliser's path writes that text back); any other form (JSON numbers,
exponents, leading zeros, whitespace, more fraction digits), any other kind, and any message the decoders refuse
return None.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, get_args

import msgspec

from schemas.codec import SCHEMA_VERSION
from schemas.events import BookDelta, Ticker, Trade
from schemas.raw import RawFrame
from venues.kalshi.messages import VENUE, DeltaMsg, TickerMsg, TradeMsg, _venue_ms, rfc3339_ms

__all__ = ["event_bytes"]

# The normaliser's decoder gives Decimal(text) for these and the codec writes str() of it, which is the text again: no
# exponent, no leading zero, and with at most 6 fraction digits a number whose integer part is 0 never has an adjusted
# exponent below -6 (where Decimal switches to scientific notation). Not "-0": the lenient decoder reads a text that
# is an integer as an int first (so "-0" becomes Decimal(0), "0"); 18 integer digits keep such ints within int64.
_CANONICAL = re.compile(r"(?!-0$)-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,6})?").fullmatch


def _as_text(tp: type) -> type:
    """``tp`` (a message struct of :mod:`venues.kalshi.messages`) with every ``Decimal`` field read as its text."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(tp):
        text = str | None if type(None) in get_args(f.type) else str
        kind = text if f.type is Decimal or Decimal in get_args(f.type) else f.type
        fields.append((f.name, kind) if f.required else (f.name, kind, f.default))
    return msgspec.defstruct(f"{tp.__name__}Text", fields)


def _payload_decoder(msg_type: type) -> msgspec.json.Decoder[Any]:
    # the same envelope and leniency as messages.decode_payload, the decimals as text
    envelope = msgspec.defstruct(f"{msg_type.__name__}Env", [("type", str), ("msg", msg_type)])
    return msgspec.json.Decoder(envelope, strict=False)


_delta = _payload_decoder(_as_text(DeltaMsg)).decode
_trade = _payload_decoder(_as_text(TradeMsg)).decode
_ticker = _payload_decoder(_as_text(TickerMsg)).decode
_encode = msgspec.msgpack.Encoder().encode

# the tuples below follow these field lists (the tag first, then the fields): a schema change must update them
_FIELDS = {
    BookDelta: ("v", "venue", "market", "event_key", "ts_ms", "recv_ns", "gatherer", "market_id", "side", "price",
                "delta", "raw_ts_ms", "dedup_ns", "replaces", "ordinal", "alias"),
    Trade: ("v", "venue", "market", "event_key", "ts_ms", "recv_ns", "gatherer", "trade_id", "yes_price", "no_price",
            "count", "taker_side", "taker_book_side", "is_block_trade", "raw_ts_ms", "dedup_ns"),
    Ticker: ("v", "venue", "market", "event_key", "ts_ms", "recv_ns", "gatherer", "market_id", "price", "yes_bid",
             "yes_ask", "yes_bid_size", "yes_ask_size", "last_trade_size", "volume", "open_interest", "dollar_volume",
             "dollar_open_interest", "raw_ts_ms", "dedup_ns"),
}  # fmt: skip
for _tp, _names in _FIELDS.items():
    if tuple(f.name for f in msgspec.structs.fields(_tp)) != _names or not _tp.__struct_config__.array_like:
        raise ImportError(f"schemas.events.{_tp.__name__} changed: update venues.kalshi.event_bytes")


# canonical decimals seen lately (a set probe is cheaper than the regex, and prices and sizes repeat); emptied when full
_known: set[str] = set()
_KNOWN_MAX = 50_000


def _canonical(texts: tuple[str | None, ...]) -> bool:
    known = _known
    for text in texts:
        if text is None or text in known:
            continue
        if _CANONICAL(text) is None:
            return False
        if len(known) >= _KNOWN_MAX:
            known.clear()
        known.add(text)
    return True


def _delta_bytes(frame: RawFrame, raw_ts_ms: int, dedup_ns: int) -> bytes | None:
    m = _delta(frame.payload).msg
    price, delta = m.price_dollars, m.delta_fp
    if not _canonical((price, delta)):
        return None
    ts = m.ts_ms if m.ts_ms is not None else rfc3339_ms(m.ts)
    recv_ns = frame.recv_ns
    return _encode(
        (
            "delta", SCHEMA_VERSION, VENUE, frame.market, frame.event_key,
            ts if ts is not None else recv_ns // 1_000_000, recv_ns, frame.gatherer,
            m.market_id, m.side, price, delta, raw_ts_ms, dedup_ns, False, 0, False,
        )
    )  # fmt: skip


def _trade_bytes(frame: RawFrame, raw_ts_ms: int, dedup_ns: int) -> bytes | None:
    m = _trade(frame.payload).msg
    if not _canonical((m.yes_price_dollars, m.no_price_dollars, m.count_fp)):
        return None
    recv_ns = frame.recv_ns
    return _encode(
        (
            "trade", SCHEMA_VERSION, VENUE, frame.market, frame.event_key, _venue_ms(m.ts_ms, m.ts, recv_ns),
            recv_ns, frame.gatherer, m.trade_id, m.yes_price_dollars, m.no_price_dollars, m.count_fp,
            m.taker_outcome_side or m.taker_side, m.taker_book_side, m.is_block_trade, raw_ts_ms, dedup_ns,
        )
    )  # fmt: skip


def _ticker_bytes(frame: RawFrame, raw_ts_ms: int, dedup_ns: int) -> bytes | None:
    m = _ticker(frame.payload).msg
    decimals = (
        m.price_dollars, m.yes_bid_dollars, m.yes_ask_dollars, m.yes_bid_size_fp, m.yes_ask_size_fp,
        m.last_trade_size_fp, m.volume_fp, m.open_interest_fp,
    )  # fmt: skip
    if not _canonical(decimals):
        return None
    recv_ns = frame.recv_ns
    return _encode(
        (
            "ticker", SCHEMA_VERSION, VENUE, frame.market, frame.event_key, _venue_ms(m.ts_ms, m.ts, recv_ns),
            recv_ns, frame.gatherer, m.market_id, *decimals, m.dollar_volume, m.dollar_open_interest,
            raw_ts_ms, dedup_ns,
        )
    )  # fmt: skip


_BY_KIND = {"delta": _delta_bytes, "trade": _trade_bytes, "ticker": _ticker_bytes}


def event_bytes(frame: RawFrame, raw_ts_ms: int, dedup_ns: int) -> bytes | None:
    """``encode_event`` of ``to_event(frame)`` with ``raw_ts_ms`` and ``dedup_ns`` set, or None (take that path)."""
    encode = _BY_KIND.get(frame.kind)
    if encode is None:
        return None
    try:
        return encode(frame, raw_ts_ms, dedup_ns)
    except Exception:  # refused or not representable: the normaliser's path raises the error it dead-letters with
        return None
