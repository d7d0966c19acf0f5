"""Normalisation of Polymarket frames to the shared events: token = market, bids -> yes ladder, asks at p -> no ladder
at 1 - p, price_change -> BookDelta carrying the level's new size, exact decimals throughout."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import SchemaError
from schemas.events import BookDelta, BookSnapshot, Lifecycle, Trade
from schemas.raw import RawFrame
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload, message_to_event, to_event
from venues.polymarket.wire import decode

D = Decimal
COMMON = {"market": "1111", "event_key": "k", "recv_ns": 5_000_000_000, "gatherer": "g1"}


def _book(bids: list[tuple[str, str]], asks: list[tuple[str, str]], ts: int = 1767225600123) -> bytes:
    return json.dumps(
        {
            "event_type": "book",
            "asset_id": "1111",
            "market": "0xaaaa",
            "bids": [{"price": p, "size": s} for p, s in bids],
            "asks": [{"price": p, "size": s} for p, s in asks],
            "timestamp": str(ts),
            "hash": "3f0c",
        }
    ).encode()


def test_book_maps_bids_to_yes_and_asks_to_no_at_one_minus_price() -> None:
    e = message_to_event("snapshot", _book([(".49", "20"), (".48", "30")], [(".52", "25"), ("0.530", "60")]), **COMMON)
    assert isinstance(e, BookSnapshot)
    assert e.venue == "polymarket" and e.market == "1111" and e.market_id == "0xaaaa" and e.ts_ms == 1767225600123
    assert e.yes == [(D("0.48"), D(30)), (D("0.49"), D(20))]
    assert e.no == [(D("0.470"), D(60)), (D("0.48"), D(25))]


@given(
    st.lists(st.tuples(st.decimals("0.001", "0.999", places=3), st.decimals("0.01", "100000", places=2)), max_size=8)
)
def test_asks_come_back_exactly_as_one_minus_no_price(asks: list[tuple[Decimal, Decimal]]) -> None:
    e = message_to_event("snapshot", _book([], [(str(p), str(s)) for p, s in asks]), **COMMON)
    assert isinstance(e, BookSnapshot)
    assert sorted((1 - p, s) for p, s in e.no) == sorted(asks)


def test_price_change_entries_become_deltas_carrying_the_new_size() -> None:
    buy = change_payload("0xaaaa", 1767225600200, b'{"asset_id":"1111","price":"0.42","size":"75","side":"BUY"}')
    sell = change_payload("0xaaaa", 1767225600200, b'{"asset_id":"1111","price":"0.58","size":"0","side":"SELL"}')
    b = message_to_event("delta", buy, **COMMON)
    s = message_to_event("delta", sell, **COMMON)
    assert isinstance(b, BookDelta) and isinstance(s, BookDelta)
    assert (b.side, b.price, b.delta, b.ts_ms, b.market_id) == ("yes", D("0.42"), D(75), 1767225600200, "0xaaaa")
    assert (s.side, s.price, s.delta) == ("no", D("0.42"), D(0))


def test_price_change_deltas_say_they_replace_and_carry_their_order_in_the_ms() -> None:
    """The book rule travels with the row: replaces, and ordinal = the keyer's count of the level's changes in the ms
    (the venue's order of one level's changes in one ms), apart from the key, whose n counts identical changes only."""
    keyer = PolymarketKeyer()
    entries = [b'{"asset_id":"1111","price":"0.42","size":"75","side":"BUY"}',
               b'{"asset_id":"1111","price":"0.420","size":"5","side":"BUY"}']  # fmt: skip
    got = []
    for entry in entries:
        payload = change_payload("0xaaaa", 1767225600200, entry)
        key, ordinal = keyer.change(1767225600200, decode("price_change", payload).price_changes[0])
        got.append(message_to_event("delta", payload, **{**COMMON, "event_key": key}, ordinal=ordinal))
    assert [(e.replaces, e.ordinal) for e in got] == [(True, 1), (True, 2)]  # type: ignore[union-attr]
    assert [e.event_key[-2:] for e in got] == [":1", ":1"]  # two sizes of the level: two bodies, each its first
    frame = RawFrame(v=1, venue="polymarket", gatherer="g1", conn=1, sid=None, seq=None, recv_ns=0, kind="delta",
                     market="1111", event_key="p:0a1b:1", payload=payload, ordinal=3)  # fmt: skip
    assert to_event(frame).ordinal == 3  # type: ignore[union-attr]
    big = message_to_event("delta", payload, **COMMON, ordinal=1 << 31)
    assert big.ordinal == 0  # type: ignore[union-attr]  # never beyond the int4 column


def test_price_change_frame_must_hold_one_entry() -> None:
    two = b'{"timestamp":"1","price_changes":[{"asset_id":"1","price":"0.5","size":"1","side":"BUY"},' \
        b'{"asset_id":"1","price":"0.6","size":"1","side":"BUY"}]}'  # fmt: skip
    with pytest.raises(SchemaError, match="2 entries"):
        message_to_event("delta", two, **COMMON)


def test_trade_mapping() -> None:
    body = (
        b'{"event_type":"last_trade_price","asset_id":"1111","market":"0xaaaa","price":"0.44","size":"12.5",'
        b'"side":"SELL","fee_rate_bps":"0","timestamp":"1767225601002"}'
    )
    t = message_to_event("trade", body, **COMMON)
    assert isinstance(t, Trade)
    assert (t.yes_price, t.no_price, t.count, t.taker_side, t.taker_book_side, t.trade_id) == (
        D("0.44"), D("0.56"), D("12.5"), "no", "ask", "k"
    )  # fmt: skip
    with_hash = body.replace(b'"side"', b'"transaction_hash":"0xdead","side"')
    assert message_to_event("trade", with_hash, **COMMON).trade_id == "0xdead"  # type: ignore[union-attr]


def test_tick_size_change_is_a_lifecycle_event() -> None:
    body = (
        b'{"event_type":"tick_size_change","asset_id":"1111","market":"0xaaaa","old_tick_size":"0.010",'
        b'"new_tick_size":"0.001","timestamp":"1767225601003"}'
    )
    e = message_to_event("lifecycle", body, **COMMON)
    assert isinstance(e, Lifecycle) and e.event_type == "tick_size_change" and e.ts_ms == 1767225601003
    assert json.loads(e.details) == {"market": "0xaaaa", "old_tick_size": "0.01", "new_tick_size": "0.001"}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("snapshot", _book([("1.5", "1")], [])),
        ("snapshot", _book([("0.5", "NaN")], [])),
        ("delta", change_payload("0x", 1, b'{"asset_id":"1","price":"-0.1","size":"1","side":"BUY"}')),
        ("delta", change_payload("0x", 1, b'{"asset_id":"1","price":"0.1","size":"1E+1000000","side":"BUY"}')),
        ("trade", b'{"asset_id":"1","price":"0.5","size":"-3","timestamp":"1"}'),
    ],
)
def test_bad_numbers_raise_value_error(kind: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        message_to_event(kind, body, **COMMON)


def test_gap_kind_is_not_a_venue_event() -> None:
    with pytest.raises(SchemaError, match="not a venue event"):
        message_to_event("gap", b"{}", **COMMON)


def test_to_event_takes_the_gatherers_placement_of_a_book() -> None:
    frame = RawFrame(
        venue="polymarket", gatherer="g2", conn=1, sid=None, seq=None, recv_ns=7, kind="snapshot", market="1111",
        event_key="b:x", payload=_book([("0.4", "1")], []), venue_ms=1767225600999, after_keys=["p:y:1"],
    )  # fmt: skip
    e = to_event(frame)
    assert isinstance(e, BookSnapshot)
    assert (e.ts_ms, e.after_keys, e.gatherer, e.recv_ns, e.event_key) == (1767225600999, ["p:y:1"], "g2", 7, "b:x")
