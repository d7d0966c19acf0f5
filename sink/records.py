"""Fast decode of ``events`` records for the sink: mirrors of the schemas Event structs with prices as strings.

The wire format is the one of :mod:`schemas.events` (msgpack, array-like, tagged, decimals encoded as strings).
The sink never needs :class:`decimal.Decimal` objects: it writes the decimal text straight into a binary
``numeric``, so these mirrors keep the strings and skip the Decimal construction (the costliest part of a
decode). Types are still checked by msgspec; a decimal string that is not a number is rejected when it is
encoded (:func:`sink.pgbinary.numeric`). ``tests/sink/test_records.py`` checks that the mirrors keep the
field names, order and tags of :mod:`schemas.events`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.codec import DECODE_ERRORS, SCHEMA_VERSION, SchemaError

__all__ = [
    "MIRRORS",
    "RecBase",
    "RecDelta",
    "RecGap",
    "RecLifecycle",
    "RecSnapshot",
    "RecTicker",
    "RecTrade",
    "Record",
    "decode_record",
    "record_decoder",
]


class RecBase(msgspec.Struct, kw_only=True, array_like=True, tag_field="type"):
    v: int = SCHEMA_VERSION
    venue: str
    market: str
    event_key: str
    ts_ms: int
    recv_ns: int
    gatherer: str


class RecSnapshot(RecBase, kw_only=True, tag="snapshot"):
    market_id: str = ""
    yes: list[tuple[str, str]] = []
    no: list[tuple[str, str]] = []
    after_keys: list[str] = []
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0


class RecDelta(RecBase, kw_only=True, tag="delta"):
    market_id: str = ""
    side: str
    price: str
    delta: str
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0
    replaces: bool = False  # the book rule (schemas.events.BookDelta)
    ordinal: int = 0
    alias: bool = False  # an alias record: the ordinal to raise the row of its key to, never a row itself


class RecTrade(RecBase, kw_only=True, tag="trade"):
    trade_id: str
    yes_price: str
    no_price: str
    count: str
    taker_side: str = ""
    taker_book_side: str = ""
    is_block_trade: bool = False
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0


class RecTicker(RecBase, kw_only=True, tag="ticker"):
    market_id: str = ""
    price: str | None = None
    yes_bid: str | None = None
    yes_ask: str | None = None
    yes_bid_size: str | None = None
    yes_ask_size: str | None = None
    last_trade_size: str | None = None
    volume: str | None = None
    open_interest: str | None = None
    dollar_volume: int | None = None
    dollar_open_interest: int | None = None
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0


class RecLifecycle(RecBase, kw_only=True, tag="lifecycle"):
    event_type: str
    open_ts: int | None = None
    close_ts: int | None = None
    determination_ts: int | None = None
    settled_ts: int | None = None
    result: str | None = None
    settlement_value: str | None = None
    is_deactivated: bool | None = None
    details: str = ""
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0
    keys: list[str] = []  # every key of the event (schemas.events.Lifecycle; empty: event_key alone)
    alias: bool = False  # an alias record: keys to add to the row that has one of them, never a row itself


class RecGap(RecBase, kw_only=True, tag="gap"):
    conn: int
    kind: str
    channel: str = ""
    markets: list[str] = []
    from_ns: int
    to_ns: int
    sid: int | None = None
    missed: int | None = None
    raw_ts_ms: int = 0  # hop stamps (schemas.events): read past, never loaded
    dedup_ns: int = 0


Record = RecSnapshot | RecDelta | RecTrade | RecTicker | RecLifecycle | RecGap
# schemas.events class name -> mirror
MIRRORS: dict[str, type[RecBase]] = {
    "BookSnapshot": RecSnapshot,
    "BookDelta": RecDelta,
    "Trade": RecTrade,
    "Ticker": RecTicker,
    "Lifecycle": RecLifecycle,
    "Gap": RecGap,
}

_decoder: Any = msgspec.msgpack.Decoder(Record)


def record_decoder() -> Any:
    """The msgspec decoder behind :func:`decode_record` (for hot loops: the caller checks ``v`` and maps
    ``msgspec.DecodeError``/``TypeError`` to :class:`schemas.SchemaError` itself)."""
    return _decoder


def decode_record(data: bytes) -> Record:
    """Decode one ``events`` value; raises only :class:`schemas.SchemaError` (bad bytes, types or version)."""
    try:
        rec: Record = _decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise SchemaError(f"Event: {exc}") from None
    if rec.v != SCHEMA_VERSION:
        raise SchemaError(f"Event: schema version {rec.v} not supported (expected {SCHEMA_VERSION})")
    return rec
