"""Polymarket RawFrames -> the shared :mod:`schemas.events` types (dedup calls :func:`to_event` on the winning copy).

Mapping decisions:

- **market = token id** (``asset_id``), ``market_id`` = the condition id (``market``). A binary Polymarket market has
  two tokens (YES, NO), each with its own book, trades and messages; each is its own mdpipe market. Nothing is folded
  or dropped: the NO token's book mirrors the YES token's [doc: price_change example shows mirrored entries] but that
  mirroring is not assumed, so a consumer that wants one book per condition reads the first token of the condition's
  ``clobTokenIds`` (the YES outcome).
- **Book**: a token's bids are the ``yes`` ladder (bids for this token) and its asks at ``p`` are the ``no`` ladder at
  ``1 - p`` (a bid for the complement), the shared two-ladder layout; ``1 - p`` is exact (``Decimal``), so
  asks come back as ``1 - price``. A ``book`` -> :class:`BookSnapshot` (``ts_ms`` = its placement in the token's
  change stream from the gatherer, else the message's timestamp).
- **price_change entry** -> :class:`BookDelta` with ``side`` yes (BUY) / no (SELL, price ``1 - p``) and ``delta`` =
  the level's NEW size: Polymarket replaces levels, it does not add, so the delta says so (``replaces=True``) and
  carries its order inside the millisecond (``ordinal``: the winning copy's ``RawFrame.ordinal``, which numbers the
  changes of one level in one venue ms in the venue's order; the event key does not carry it,
  :mod:`venues.polymarket.keys`; a later copy with a higher one raises the row's, :mod:`sink.ordinals`).
  ``sink.book`` and the database's ``book_at`` rebuild with that rule; :mod:`venues.polymarket.book` is the venue's
  own reference.
- **last_trade_price** -> :class:`Trade`: ``yes_price`` = price, ``no_price`` = ``1 - price``, ``count`` = size,
  ``taker_side`` yes (BUY: the taker bought this token) / no (SELL), ``taker_book_side`` bid (BUY) / ask (SELL) [guess:
  ``side`` is the taker's, as Trade.taker_side], ``trade_id`` = ``transaction_hash`` when sent, else the event
  key (there is no trade id).
- **tick_size_change** -> :class:`Lifecycle` ``event_type="tick_size_change"``, ``details`` = ``{"market",
  "old_tick_size", "new_tick_size"}`` as compact JSON (canonical numbers).

Payloads: a ``book``, ``last_trade_price`` or ``tick_size_change`` frame holds the venue's message verbatim; a
``price_change`` frame holds ONE entry, verbatim, inside the message's own envelope re-encoded
(``{"event_type":"price_change","market":..,"timestamp":..,"price_changes":[<entry>]}``, :func:`change_payload`).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from schemas.codec import SchemaError
from schemas.events import BookDelta, BookSnapshot, Event, Lifecycle, Trade
from schemas.raw import RawFrame
from venues.polymarket import NAME
from venues.polymarket.numbers import PRICE, SIZE, check, norm
from venues.polymarket.wire import (
    BookMsg,
    LastTradePriceMsg,
    Level,
    PriceChangeMsg,
    TickSizeChangeMsg,
    decode,
)

__all__ = ["change_payload", "message_to_event", "to_event"]

_ONE = Decimal(1)
_EVENT_BY_KIND = {
    "snapshot": "book",
    "delta": "price_change",
    "trade": "last_trade_price",
    "lifecycle": "tick_size_change",
}
_json = msgspec.json.Encoder()


def change_payload(market: str, timestamp: int, entry: bytes) -> bytes:
    """The frame payload of one price_change entry (``entry`` verbatim)."""
    return b"".join(
        (
            b'{"event_type":"price_change","market":',
            _json.encode(market),
            b',"timestamp":"',
            str(timestamp).encode(),
            b'","price_changes":[',
            entry,
            b"]}",
        )
    )


def _ladders(
    bids: list[Level], asks: list[Level]
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    yes = sorted((check(lv.price, "bids", PRICE), check(lv.size, "bids", SIZE)) for lv in bids)
    no = sorted((_ONE - check(lv.price, "asks", PRICE), check(lv.size, "asks", SIZE)) for lv in asks)
    return yes, no


def message_to_event(
    kind: str, payload: bytes, *, market: str, event_key: str, recv_ns: int, gatherer: str, ordinal: int = 0
) -> Event:
    """The normalised Event of one frame payload of ``kind`` (``SchemaError``/``ValueError`` on bad input); ``ordinal``
    is a price_change entry's order among its level's changes in the millisecond (``RawFrame.ordinal``)."""
    event_type = _EVENT_BY_KIND.get(kind)
    if event_type is None:
        raise SchemaError(f"polymarket: kind {kind!r} is not a venue event")
    m = decode(event_type, payload)
    common = {"venue": NAME, "market": market, "event_key": event_key, "recv_ns": recv_ns, "gatherer": gatherer}
    if isinstance(m, BookMsg):
        yes, no = _ladders(m.bids, m.asks)
        return BookSnapshot(**common, ts_ms=m.timestamp, market_id=m.market, yes=yes, no=no)
    if isinstance(m, PriceChangeMsg):
        if len(m.price_changes) != 1:
            raise SchemaError(f"polymarket price_change frame: {len(m.price_changes)} entries, expected 1")
        e = m.price_changes[0]
        price = check(e.price, "price", PRICE)
        return BookDelta(
            **common,
            ts_ms=m.timestamp,
            market_id=m.market,
            side="yes" if e.side == "BUY" else "no",
            price=price if e.side == "BUY" else _ONE - price,
            delta=check(e.size, "size", SIZE),
            replaces=True,
            ordinal=ordinal if 0 <= ordinal < 1 << 31 else 0,  # fits the int4 column
        )
    if isinstance(m, LastTradePriceMsg):
        price = check(m.price, "price", PRICE)
        return Trade(
            **common,
            ts_ms=m.timestamp,
            trade_id=m.transaction_hash or event_key,
            yes_price=price,
            no_price=_ONE - price,
            count=check(m.size, "size", SIZE),
            taker_side={"BUY": "yes", "SELL": "no"}.get(m.side, ""),
            taker_book_side={"BUY": "bid", "SELL": "ask"}.get(m.side, ""),
        )
    if isinstance(m, TickSizeChangeMsg):
        details = {
            "market": m.market,
            "old_tick_size": norm(check(m.old_tick_size, "old_tick_size", PRICE)),
            "new_tick_size": norm(check(m.new_tick_size, "new_tick_size", PRICE)),
        }
        return Lifecycle(
            **common, ts_ms=m.timestamp, event_type="tick_size_change", details=_json.encode(details).decode()
        )
    raise SchemaError(f"polymarket: unexpected message {type(m).__name__}")  # pragma: no cover


def to_event(frame: RawFrame) -> Event:
    """The normalised Event of the winning copy ``frame``; a book placed by the gatherer (``venue_ms``) gets that
    position and its ``after_keys``."""
    event = message_to_event(
        frame.kind, frame.payload, market=frame.market, event_key=frame.event_key, recv_ns=frame.recv_ns,
        gatherer=frame.gatherer, ordinal=frame.ordinal,
    )  # fmt: skip
    if frame.venue_ms is not None and isinstance(event, BookSnapshot):
        event.ts_ms = frame.venue_ms
        event.after_keys = list(frame.after_keys)
    return event
