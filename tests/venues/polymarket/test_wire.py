"""Wire structs of the Polymarket market channel: the documented examples decode exactly, both number spellings and
both framings are accepted, bad input raises SchemaError, subscribe frames have the documented shape."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from schemas.codec import SchemaError
from venues.polymarket import wire

BOOK = (
    b'{"event_type":"book","asset_id":"6581","market":"0xbd31","bids":[{"price":".48","size":"30"},'
    b'{"price":".49","size":"20"}],"asks":[{"price":".52","size":"25"}],"timestamp":"123456789000","hash":"0x0",'
    b'"tick_size":"0.01","some_new_field":{"x":1}}'
)
CHANGE = (
    b'{"market":"0x5f65","price_changes":[{"asset_id":"7132","price":"0.5","size":"200","side":"BUY",'
    b'"hash":"5662","best_bid":"0.5","best_ask":"1"},{"asset_id":"5211","price":"0.5","size":"200","side":"SELL",'
    b'"hash":"1895","best_bid":"0","best_ask":"0.5"}],"timestamp":"1757908892351","event_type":"price_change"}'
)
TRADE = (
    b'{"event_type":"last_trade_price","asset_id":"1111","market":"0xaaaa","price":"0.44","size":"12.5",'
    b'"side":"BUY","fee_rate_bps":"0","timestamp":"1767225601002"}'
)
TICK = (
    b'{"event_type":"tick_size_change","asset_id":"1111","market":"0xaaaa","old_tick_size":"0.01",'
    b'"new_tick_size":"0.001","timestamp":"1767225601003"}'
)


def test_book_decodes_exactly() -> None:
    m = wire.decode("book", BOOK)
    assert m.asset_id == "6581" and m.market == "0xbd31" and m.timestamp == 123456789000
    assert [(lv.price, lv.size) for lv in m.bids] == [(Decimal("0.48"), 30), (Decimal("0.49"), 20)]
    assert m.asks[0].price == Decimal("0.52") and m.tick_size == Decimal("0.01") and m.hash == "0x0"


def test_price_change_keeps_both_tokens_entries() -> None:
    m = wire.decode("price_change", CHANGE)
    assert m.timestamp == 1757908892351 and m.market == "0x5f65"
    assert [(e.asset_id, e.side, e.size, e.best_bid, e.best_ask) for e in m.price_changes] == [
        ("7132", "BUY", 200, Decimal("0.5"), Decimal("1")),
        ("5211", "SELL", 200, Decimal("0"), Decimal("0.5")),
    ]


def test_trade_and_tick_decode() -> None:
    t = wire.decode("last_trade_price", TRADE)
    assert (t.price, t.size, t.side, t.fee_rate_bps, t.transaction_hash) == (
        Decimal("0.44"), Decimal("12.5"), "BUY", 0, ""
    )  # fmt: skip
    z = wire.decode("tick_size_change", TICK)
    assert (z.old_tick_size, z.new_tick_size) == (Decimal("0.01"), Decimal("0.001"))


def test_numbers_as_json_numbers_decode_to_the_same_values() -> None:
    as_numbers = json.loads(TRADE)
    as_numbers.update(price=0.44, size=12.5, timestamp=1767225601002)
    assert wire.decode("last_trade_price", json.dumps(as_numbers).encode()) == wire.decode("last_trade_price", TRADE)


def test_split_frame_object_and_array() -> None:
    assert wire.split_frame(TRADE) == [TRADE]
    assert wire.split_frame(b" [" + TRADE + b"," + TICK + b"]") == [TRADE, TICK]
    with pytest.raises(SchemaError):
        wire.split_frame(b"[{")


@pytest.mark.parametrize(
    ("event_type", "body"),
    [
        ("book", b'{"event_type":"book","asset_id":"1","bids":[],"asks":[]}'),  # no timestamp
        ("price_change", b'{"timestamp":"1","price_changes":[{"asset_id":"1","price":"0.5","size":"1","side":"UP"}]}'),
        ("last_trade_price", b'{"asset_id":"1","price":"x","size":"1","timestamp":"1"}'),
        ("tick_size_change", b"not json"),
    ],
)
def test_bad_messages_raise_schema_error(event_type: str, body: bytes) -> None:
    with pytest.raises(SchemaError, match="polymarket"):
        wire.decode(event_type, body)


def test_unknown_event_type_has_no_decoder() -> None:
    with pytest.raises(SchemaError, match="no decoder"):
        wire.decode("best_bid_ask", b"{}")


def test_subscribe_frames() -> None:
    assert json.loads(wire.encode_subscribe(["1", "2"])) == {
        "type": "market",
        "assets_ids": ["1", "2"],
        "custom_feature_enabled": False,
    }
    assert json.loads(wire.encode_subscribe(["1"], initial_dump=True))["initial_dump"] is True
    assert json.loads(wire.encode_update("unsubscribe", ["3"])) == {"operation": "unsubscribe", "assets_ids": ["3"]}
    assert wire.PING == b"PING" and wire.PING_INTERVAL_S == 10.0
    assert wire.MAX_IDS_PER_FRAME <= wire.MAX_ASSETS_PER_CONNECTION
