"""Kalshi message decoding: exact decimals, numbers-as-strings, and the mapping to normalised events."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas import BookDelta, BookSnapshot, Lifecycle, RawFrame, SchemaError, Ticker, Trade
from venues.kalshi.messages import decode_envelope, decode_msg, to_event


def frame(kind: str, payload: bytes, recv_ns: int = 1_767_225_600_999_000_000) -> RawFrame:
    return RawFrame(
        venue="kalshi",
        gatherer="g3",
        conn=1,
        sid=3,
        seq=2,
        recv_ns=recv_ns,
        kind=kind,  # type: ignore[arg-type]
        market="KXDEMO-26JAN01-T50",
        event_key="key",
        payload=payload,
    )


def test_delta_from_venues_example() -> None:
    payload = (
        b'{"type":"orderbook_delta","sid":3,"seq":2,"msg":{"market_ticker":"KXDEMO-26JAN01-T50",'
        b'"market_id":"0f1e-0001","price_dollars":"0.4300","delta_fp":"-5.00","side":"yes","ts_ms":1767225600123}}'
    )
    event = to_event(frame("delta", payload))
    assert isinstance(event, BookDelta)
    assert (event.price, event.delta, event.side, event.ts_ms) == (
        Decimal("0.4300"),
        Decimal("-5.00"),
        "yes",
        1767225600123,
    )
    assert (event.gatherer, event.event_key, event.market_id) == ("g3", "key", "0f1e-0001")


def test_numbers_may_arrive_as_json_numbers_or_strings() -> None:
    as_numbers = decode_msg(
        "delta", b'{"market_ticker":"M","price_dollars":0.43,"delta_fp":-5,"side":"no","ts_ms":"17"}'
    )
    assert (as_numbers.price_dollars, as_numbers.delta_fp, as_numbers.ts_ms) == (Decimal("0.43"), Decimal(-5), 17)


def test_snapshot_sorted_and_empty_side_absent() -> None:
    payload = (
        b'{"type":"orderbook_snapshot","sid":3,"seq":1,"msg":{"market_ticker":"KXDEMO-26JAN01-T50",'
        b'"market_id":"u","yes_dollars_fp":[["0.4300","15.00"],["0.4100","120.00"]]}}'
    )
    event = to_event(frame("snapshot", payload, recv_ns=5_000_000))
    assert isinstance(event, BookSnapshot)
    assert event.yes == [(Decimal("0.4100"), Decimal("120.00")), (Decimal("0.4300"), Decimal("15.00"))]
    assert event.no == [] and event.ts_ms == 5


def test_trade_and_ticker() -> None:
    trade = to_event(
        frame(
            "trade",
            b'{"type":"trade","sid":5,"seq":9,"msg":{"trade_id":"6f1c","market_ticker":"M",'
            b'"yes_price_dollars":"0.4400","no_price_dollars":"0.5600","count_fp":"3.00",'
            b'"taker_outcome_side":"yes","taker_book_side":"bid","ts":1767225601,'
            b'"ts_ms":1767225601002}}',
        )
    )
    assert isinstance(trade, Trade)
    assert (trade.trade_id, trade.count, trade.ts_ms, trade.taker_side) == (
        "6f1c",
        Decimal("3.00"),
        1767225601002,
        "yes",
    )
    ticker = to_event(
        frame(
            "ticker",
            b'{"type":"ticker","sid":4,"msg":{"market_ticker":"M","yes_bid_dollars":"0.43",'
            b'"yes_ask_dollars":"0.45","dollar_volume":12,"ts":1767225600}}',
        )
    )
    assert isinstance(ticker, Ticker)
    assert (ticker.yes_bid, ticker.yes_ask, ticker.dollar_volume, ticker.ts_ms) == (
        Decimal("0.43"),
        Decimal("0.45"),
        12,
        1767225600000,
    )


def test_lifecycle_keeps_unknown_fields_in_details() -> None:
    event = to_event(
        frame(
            "lifecycle",
            b'{"type":"market_lifecycle_v2","sid":6,"seq":12,"msg":{"market_ticker":"M",'
            b'"event_type":"determined","result":"yes","settlement_value":"1.0000",'
            b'"determination_ts":1767229200,"exchange_index":4}}',
        )
    )
    assert isinstance(event, Lifecycle)
    assert event.ts_ms == 1767229200000 and event.settlement_value == Decimal("1.0000")
    assert event.details == '{"exchange_index":4}'


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"type":"orderbook_delta","msg":{"market_ticker":"M"}}',
        b'{"type":"orderbook_delta","msg":{"market_ticker":"M","price_dollars":"x","delta_fp":"1","side":"yes"}}',
        b"[1,2]",
    ],
)
def test_malformed_payload_raises_schema_error(payload: bytes) -> None:
    with pytest.raises(SchemaError):
        to_event(frame("delta", payload))


def test_envelope_keeps_msg_verbatim() -> None:
    env = decode_envelope(b'{"type":"ok","id":3,"sid":7,"seq":41,"msg":{"market_tickers":["A","B"]}}')
    assert (env.type, env.id, env.sid, env.seq, bytes(env.msg)) == ("ok", 3, 7, 41, b'{"market_tickers":["A","B"]}')


def test_event_level_lifecycle_messages_without_event_type() -> None:
    fee = to_event(
        frame(
            "lifecycle",
            b'{"type":"event_fee_update","sid":6,"seq":13,"msg":{"event_ticker":"KXE",'
            b'"fee_type_override":null,"fee_multiplier_override":null}}',
        )
    )
    assert isinstance(fee, Lifecycle) and fee.event_type == "event_fee_update"
    assert "fee_multiplier_override" in fee.details
    meta = to_event(
        frame(
            "lifecycle",
            b'{"type":"market_lifecycle_v2","sid":6,"seq":14,"msg":{"market_ticker":"M",'
            b'"additional_metadata":{"title":"T"}}}',
        )
    )
    assert isinstance(meta, Lifecycle) and meta.event_type == "metadata_updated"
