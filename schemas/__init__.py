"""Wire contracts shared by every stage: msgspec structs encoded as msgpack on the Kafka topics.

Evolution rules (msgspec): new fields get defaults and go last; never reorder, rename or retype a field;
a breaking change bumps ``SCHEMA_VERSION`` and decoders reject other versions with ``SchemaError``.
This package imports nothing else of mdpipe.
"""

from schemas.codec import SCHEMA_VERSION, SchemaError
from schemas.dlq import DeadLetter, decode_dead_letter, encode_dead_letter
from schemas.events import (
    EVENT_TYPES,
    BookDelta,
    BookSnapshot,
    Event,
    Gap,
    Level,
    Lifecycle,
    Ticker,
    Trade,
    decode_event,
    encode_event,
)
from schemas.markets import MarketRef, decode_market, encode_market
from schemas.raw import FrameKind, GapReport, RawFrame, decode_gap, decode_raw, encode_gap, encode_raw

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "BookDelta",
    "BookSnapshot",
    "DeadLetter",
    "Event",
    "FrameKind",
    "Gap",
    "GapReport",
    "Level",
    "Lifecycle",
    "MarketRef",
    "RawFrame",
    "SchemaError",
    "Ticker",
    "Trade",
    "decode_dead_letter",
    "decode_event",
    "decode_gap",
    "decode_market",
    "decode_raw",
    "encode_dead_letter",
    "encode_event",
    "encode_gap",
    "encode_market",
    "encode_raw",
]
