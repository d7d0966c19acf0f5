"""Round trips and bad input for every topic schema: decode raises SchemaError, never anything else."""

from __future__ import annotations

from decimal import Decimal

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
    fields = msgspec.msgpack.decode(
        encode_raw(
            RawFrame(
                venue="k",
                gatherer="g1",
                conn=0,
                sid=1,
                seq=1,
                recv_ns=1,
                kind="delta",
                market="M",
                event_key="e",
                payload=b"",
            )
        )
    )
    fields[0] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1} not supported"):
        decode_raw(msgspec.msgpack.encode(fields))


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
