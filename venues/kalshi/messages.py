"""Kalshi trade-api v2 market-data messages: tolerant msgspec decoders and the mapping to normalised Events.

Shared by the gatherer (parsing, keys), dedup (``to_event`` on the winning RawFrame) and ``mdpipe verify``
(reading the emulator's ground truth). Decoders accept numbers sent as JSON numbers or strings and keep
prices and sizes exact (``Decimal``); unknown fields are ignored, as a client of an evolving API must.

A RawFrame ``payload`` from the Kalshi adapter is the verbatim venue message ``{"type", "sid", "seq", "msg"}``
for one market. Sample (orderbook_delta)::

    {"type":"orderbook_delta","sid":3,"seq":2,"msg":{"market_ticker":"KXDEMO-26JAN01-T50",
     "market_id":"0f1e-0001","price_dollars":"0.4300","delta_fp":"-5.00","side":"yes","ts_ms":1767225600123}}
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

import msgspec

from schemas.codec import SchemaError
from schemas.events import BookDelta, BookSnapshot, Event, Lifecycle, Ticker, Trade
from schemas.raw import RawFrame
from venues.kalshi.channels import (
    EVENT_FEE_UPDATE,
    EVENT_LIFECYCLE,
    MARKET_LIFECYCLE,
    ORDERBOOK_DELTA,
    ORDERBOOK_SNAPSHOT,
    TICKER,
    TRADE,
)

__all__ = [
    "KIND_BY_TYPE",
    "DeltaMsg",
    "Envelope",
    "LifecycleMsg",
    "SnapshotMsg",
    "TickerMsg",
    "TradeMsg",
    "decode_envelope",
    "decode_msg",
    "decode_payload",
    "msg_to_event",
    "rfc3339_ms",
    "to_event",
]

VENUE = "kalshi"


class Envelope(msgspec.Struct):
    """Any server message. ``msg`` stays raw so it can be decoded by type (or kept verbatim)."""

    type: str
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    msg: msgspec.Raw = msgspec.Raw(b"null")


class SnapshotMsg(msgspec.Struct):
    market_ticker: str
    market_id: str = ""
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class DeltaMsg(msgspec.Struct):
    market_ticker: str
    price_dollars: Decimal
    delta_fp: Decimal
    side: Literal["yes", "no"]
    market_id: str = ""
    ts_ms: int | None = None
    ts: str | None = None


class TradeMsg(msgspec.Struct):
    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_side: str = ""
    taker_outcome_side: str = ""
    taker_book_side: str = ""
    is_block_trade: bool = False
    ts: int | None = None
    ts_ms: int | None = None


class TickerMsg(msgspec.Struct):
    market_ticker: str
    market_id: str = ""
    price_dollars: Decimal | None = None
    yes_bid_dollars: Decimal | None = None
    yes_ask_dollars: Decimal | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    last_trade_size_fp: Decimal | None = None
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    dollar_volume: int | None = None
    dollar_open_interest: int | None = None
    ts: int | None = None
    ts_ms: int | None = None


class LifecycleMsg(msgspec.Struct):
    event_type: str = ""  # absent on event_lifecycle / event_fee_update and the metadata_updated form
    market_ticker: str = ""
    event_ticker: str = ""  # event_lifecycle / event_fee_update messages carry only this
    open_ts: int | None = None
    close_ts: int | None = None
    determination_ts: int | None = None
    settled_ts: int | None = None
    result: str | None = None
    settlement_value: Decimal | None = None
    is_deactivated: bool | None = None


# venue message type -> RawFrame kind
KIND_BY_TYPE: dict[str, str] = {
    ORDERBOOK_SNAPSHOT: "snapshot",
    ORDERBOOK_DELTA: "delta",
    TRADE: "trade",
    TICKER: "ticker",
    MARKET_LIFECYCLE: "lifecycle",
    EVENT_LIFECYCLE: "lifecycle",
    EVENT_FEE_UPDATE: "lifecycle",
}

_envelope = msgspec.json.Decoder(Envelope, strict=False)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "snapshot": msgspec.json.Decoder(SnapshotMsg, strict=False),
    "delta": msgspec.json.Decoder(DeltaMsg, strict=False),
    "trade": msgspec.json.Decoder(TradeMsg, strict=False),
    "ticker": msgspec.json.Decoder(TickerMsg, strict=False),
    "lifecycle": msgspec.json.Decoder(LifecycleMsg, strict=False),
}
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


def _typed_envelope(name: str, msg_type: type) -> type:
    """An envelope whose ``msg`` is decoded as ``msg_type`` in the same pass (unknown fields ignored)."""
    return msgspec.defstruct(name, [("type", str), ("msg", msg_type)])


# kind -> one-pass decoder of a whole payload: envelope and typed msg at once (parse once). Lifecycle is left out: its
# event keeps the fields LifecycleMsg does not know, so it needs the msg bytes (``decode_envelope`` + ``decode_msg``).
_payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(_typed_envelope(f"{tp.__name__}Envelope", tp), strict=False)
    for kind, tp in (("snapshot", SnapshotMsg), ("delta", DeltaMsg), ("trade", TradeMsg), ("ticker", TickerMsg))
}
_LIFECYCLE_KNOWN = {f.name for f in msgspec.structs.fields(LifecycleMsg)}


def decode_envelope(data: bytes) -> Envelope:
    try:
        return _envelope.decode(data)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"kalshi envelope: {exc}") from None


def decode_msg(kind: str, msg: bytes) -> Any:
    """Decode the ``msg`` object of a market-data message of ``kind`` (a RawFrame kind)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        raise SchemaError(f"kalshi: no decoder for kind {kind!r}")
    try:
        return decoder.decode(msg)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"kalshi {kind}: {exc}") from None


def decode_payload(kind: str, payload: bytes) -> tuple[str, Any] | None:
    """``(envelope type, decoded msg)`` of a whole market-data message of ``kind`` in one JSON pass, or None for a
    kind that has no one-pass decoder (lifecycle: use :func:`decode_envelope` and :func:`msg_to_event`)."""
    decoder = _payload_decoders.get(kind)
    if decoder is None:
        return None
    try:
        envelope = decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"kalshi {kind}: {exc}") from None
    return envelope.type, envelope.msg


def _rfc3339_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


rfc3339_ms = _rfc3339_ms  # public: the gatherer reads deprecated RFC3339 ``ts`` fields the same way


def _venue_ms(ts_ms: int | None, ts_s: int | None, fallback_ns: int) -> int:
    if ts_ms is not None:
        return ts_ms
    if ts_s is not None:
        return ts_s * 1000
    return fallback_ns // 1_000_000


def msg_to_event(
    kind: str,
    msg: bytes,
    *,
    market: str,
    event_key: str,
    recv_ns: int,
    gatherer: str,
    envelope_type: str = "",
    decoded: Any = None,
) -> Event:
    """Build the normalised Event from one market-data ``msg`` body (``decoded``: that body already decoded, as
    :func:`decode_payload` gives it; ``msg`` is then not read)."""
    m = decoded if decoded is not None else decode_msg(kind, msg)
    common = {"venue": VENUE, "market": market, "event_key": event_key, "recv_ns": recv_ns, "gatherer": gatherer}
    if kind == "delta":
        ts = m.ts_ms if m.ts_ms is not None else _rfc3339_ms(m.ts)
        return BookDelta(
            **common,
            ts_ms=ts if ts is not None else recv_ns // 1_000_000,
            market_id=m.market_id,
            side=m.side,
            price=m.price_dollars,
            delta=m.delta_fp,
        )
    if kind == "trade":
        return Trade(
            **common,
            ts_ms=_venue_ms(m.ts_ms, m.ts, recv_ns),
            trade_id=m.trade_id,
            yes_price=m.yes_price_dollars,
            no_price=m.no_price_dollars,
            count=m.count_fp,
            taker_side=m.taker_outcome_side or m.taker_side,
            taker_book_side=m.taker_book_side,
            is_block_trade=m.is_block_trade,
        )
    if kind == "ticker":
        return Ticker(
            **common,
            ts_ms=_venue_ms(m.ts_ms, m.ts, recv_ns),
            market_id=m.market_id,
            price=m.price_dollars,
            yes_bid=m.yes_bid_dollars,
            yes_ask=m.yes_ask_dollars,
            yes_bid_size=m.yes_bid_size_fp,
            yes_ask_size=m.yes_ask_size_fp,
            last_trade_size=m.last_trade_size_fp,
            volume=m.volume_fp,
            open_interest=m.open_interest_fp,
            dollar_volume=m.dollar_volume,
            dollar_open_interest=m.dollar_open_interest,
        )
    if kind == "snapshot":
        return BookSnapshot(
            **common,
            ts_ms=recv_ns // 1_000_000,
            market_id=m.market_id,
            yes=sorted(m.yes_dollars_fp),
            no=sorted(m.no_dollars_fp),
        )
    if kind == "lifecycle":
        extra = {k: v for k, v in _dict_decoder.decode(msg).items() if k not in _LIFECYCLE_KNOWN}
        # Only settled/determined carry the time of the event itself; others get the first copy's receive time.
        stamp = {"settled": m.settled_ts, "determined": m.determination_ts}.get(m.event_type)
        if envelope_type in (EVENT_LIFECYCLE, EVENT_FEE_UPDATE):
            event_type = envelope_type
        else:  # market_lifecycle_v2 without event_type is its metadata_updated form
            event_type = m.event_type or "metadata_updated"
        return Lifecycle(
            **common,
            ts_ms=stamp * 1000 if stamp is not None else recv_ns // 1_000_000,
            event_type=event_type,
            open_ts=m.open_ts,
            close_ts=m.close_ts,
            determination_ts=m.determination_ts,
            settled_ts=m.settled_ts,
            result=m.result,
            settlement_value=m.settlement_value,
            is_deactivated=m.is_deactivated,
            details=msgspec.json.encode(extra).decode() if extra else "",
        )
    raise SchemaError(f"kalshi: kind {kind!r} is not a venue event")


def to_event(frame: RawFrame) -> Event:
    """The normalised Event for the winning copy ``frame`` (its gatherer and receive time are recorded).

    A snapshot frame with ``venue_ms`` (its position in the market's delta stream, decided by the gatherer) gets
    ``ts_ms = venue_ms`` and the frame's ``after_keys``; without it, the receive time as before."""
    one_pass = decode_payload(frame.kind, frame.payload)
    if one_pass is not None:  # parse once: envelope and msg in one pass
        envelope_type, decoded = one_pass
        msg = b""
    else:
        env = decode_envelope(frame.payload)
        envelope_type, decoded, msg = env.type, None, bytes(env.msg)
    event = msg_to_event(
        frame.kind,
        msg,
        market=frame.market,
        event_key=frame.event_key,
        recv_ns=frame.recv_ns,
        gatherer=frame.gatherer,
        envelope_type=envelope_type,
        decoded=decoded,
    )
    if frame.venue_ms is not None and isinstance(event, BookSnapshot):
        event.ts_ms = frame.venue_ms
        event.after_keys = list(frame.after_keys)
    return event
