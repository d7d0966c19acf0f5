"""Round trips and bad input for every topic schema: decode raises SchemaError, never anything else."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from schemas import (
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    DeadLetter,
    Lifecycle,
    MarketRef,
    RawFrame,
    SchemaError,
    Ticker,
    Trade,
    decode_dead_letter,
    decode_event,
    decode_market,
    decode_raw,
    encode_dead_letter,
    encode_event,
    encode_market,
    encode_raw,
)
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

COMMON = {
    "venue": VENUE,
    "market": "KXA-1",
    "event_key": "d:ab:1",
    "ts_ms": 1767225600123,
    "recv_ns": 1767225600123456789,
    "gatherer": "g1",
}

EVENTS = [
    BookSnapshot(**COMMON, market_id="u1", yes=[(Decimal("0.4100"), Decimal("120.00"))], no=[]),
    BookDelta(**COMMON, market_id="u1", side="no", price=Decimal("0.5500"), delta=Decimal("-5.25")),
    Trade(
        **COMMON,
        trade_id="t-1",
        yes_price=Decimal("0.44"),
        no_price=Decimal("0.56"),
        count=Decimal("3.50"),
        taker_side="yes",
        taker_book_side="bid",
        is_block_trade=True,
    ),
    Ticker(**COMMON, price=Decimal("0.4400"), yes_bid=Decimal("0.43"), volume=Decimal("1000.01"), dollar_volume=7),
    Lifecycle(
        **COMMON,
        event_type="determined",
        result="yes",
        settlement_value=Decimal("1.0000"),
        determination_ts=1767229200,
        details='{"x":1}',
    ),
]

RAW = RawFrame(
    venue=VENUE,
    gatherer="g1",
    conn=0,
    sid=1,
    seq=1,
    recv_ns=1,
    kind="delta",
    market="M",
    event_key="e",
    payload=b"{}",
)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip_is_exact(event: object) -> None:
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_raw_market_dead_letter_round_trip() -> None:
    frame = RawFrame(
        venue=VENUE,
        gatherer="g2",
        conn=3,
        sid=None,
        seq=None,
        recv_ns=5,
        kind="ticker",
        market="KXA-1",
        event_key="k:1:1",
        payload=b'{"type":"ticker"}',
    )
    assert decode_raw(encode_raw(frame)) == frame
    ref = MarketRef(venue=VENUE, ticker="KXA-1", title="T", status="active", open_time_ms=1, close_time_ms=None)
    assert decode_market(encode_market(ref)) == ref
    dead = DeadLetter(stage="sink", reason="bad", payload=b"\x00\xff", source_topic="events", source_offset=9)
    assert decode_dead_letter(encode_dead_letter(dead)) == dead


def test_decimals_are_encoded_as_strings() -> None:
    raw = msgspec.msgpack.decode(encode_event(EVENTS[1]))
    assert "0.5500" in raw and "-5.25" in raw


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_bytes(cut: int) -> None:
    data = encode_event(EVENTS[2])
    with pytest.raises(SchemaError, match="truncated"):
        decode_event(data[:-cut])


def test_wrong_version_is_named() -> None:
    fields = msgspec.msgpack.decode(encode_raw(RAW))
    fields[0] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1} not supported"):
        decode_raw(msgspec.msgpack.encode(fields))


def _with_version(data: bytes, version: int) -> bytes:
    fields = msgspec.msgpack.decode(data)
    fields[1 if isinstance(fields[0], str) else 0] = version  # a tagged event starts with its tag, then v
    return msgspec.msgpack.encode(fields)


_RECORDS = [
    *((encode_event, decode_event, event) for event in EVENTS),
    (encode_raw, decode_raw, RAW),
    (encode_market, decode_market, MarketRef(venue=VENUE, ticker="KXA-1", title="T", status="active")),
    (encode_dead_letter, decode_dead_letter, DeadLetter(stage="sink", reason="bad", payload=b"", source_topic="e")),
]
_IDS = [type(record).__name__ for _, _, record in _RECORDS]


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, SCHEMA_VERSION - 1, 2**40])
@pytest.mark.parametrize(("encode", "decode", "record"), _RECORDS, ids=_IDS)
def test_every_schema_names_a_wrong_version(encode: Any, decode: Any, record: object, version: int) -> None:
    with pytest.raises(SchemaError, match=f"schema version {version} not supported"):
        decode(_with_version(encode(record), version))


@pytest.mark.parametrize(("encode", "decode", "record"), _RECORDS, ids=_IDS)
def test_decoding_runs_no_python_code_per_record(encode: Any, decode: Any, record: object) -> None:
    """The dedup stage decodes three raw frames per venue event and the sink one event per row: the version check
    runs inside msgspec, so decoding calls no Python function but the codec's own wrapper."""
    data = encode(record)
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            calls.append(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        decode(data)
    finally:
        sys.setprofile(None)
    assert calls == ["make_codec.<locals>.decode"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgspec.msgpack.encode({"not": "an array"}),
        msgspec.msgpack.encode(["delta", 1, VENUE, "M", "k", "not-an-int", 1, "g1", "", "yes", "0.1", "1"]),
        msgspec.msgpack.encode(["nosuchtype", 1]),
        msgspec.msgpack.encode(["delta", 1, VENUE, "M", "k", 1, 1, "g1", "", "maybe", "0.1", "1"]),
        msgspec.msgpack.encode(["delta", 1, VENUE, "M", "k", 1, 1, "g1", "", "yes", "abc", "1"]),
    ],
)
def test_bad_input_raises_schema_error_only(data: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_event(data)


def _not_utf8(data: bytes, text: str) -> bytes:
    """``data`` with the str ``text`` (its one occurrence) ending in a cut UTF-8 sequence."""
    assert data.count(text.encode()) == 1
    return data.replace(text.encode(), text.encode()[:-1] + b"\xed", 1)


@pytest.mark.parametrize(("encode", "decode", "record"), _RECORDS, ids=_IDS)
def test_a_str_that_is_not_utf8_is_a_schema_error(encode: Any, decode: Any, record: object) -> None:
    """msgspec raises UnicodeDecodeError, not DecodeError, for a str field that is not UTF-8 (one byte changed in a
    record is as likely to do that as anything else): a decoder that let it through stopped the stage reading that
    record (a dedup worker, restarted, read the same raw record again) instead of dead-lettering it."""
    text = {MarketRef: "KXA-1", DeadLetter: "sink"}.get(type(record), "g1")
    with pytest.raises(SchemaError):
        decode(_not_utf8(encode(record), text))


@pytest.mark.parametrize(("encode", "decode", "record"), _RECORDS, ids=_IDS)
def test_a_record_nested_too_deep_is_a_schema_error(encode: Any, decode: Any, record: object) -> None:
    """msgspec skips extra trailing array elements recursively and raises RecursionError past its nesting limit (a
    record of ~2 KB reaches it): neither DecodeError nor ValueError, so it stopped the stage reading the record."""
    data = encode(record)
    fields = msgspec.msgpack.decode(data)
    head = msgspec.msgpack.encode([*fields, None])[:-1]  # the array header counting one more element, the fields
    with pytest.raises(SchemaError):
        decode(head + b"\x91" * 2000 + b"\xc0")
