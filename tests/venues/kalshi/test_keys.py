"""Event keys: equal for copies of one venue event, different for distinct events; bad numbers are bad input."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from venues.kalshi import keys
from venues.kalshi.keys import EventKeyer, canonical, check_number, norm_decimal
from venues.kalshi.messages import DeltaMsg, SnapshotMsg, TickerMsg


def delta(body: bytes) -> DeltaMsg:
    return msgspec.json.decode(body, type=DeltaMsg, strict=False)


def dbody(ts: int, delta_fp: str = "-5.00", side: str = "yes", price: str = "0.4300") -> bytes:
    return (
        f'{{"market_ticker":"M","price_dollars":"{price}","delta_fp":"{delta_fp}","side":"{side}","ts_ms":{ts}}}'
    ).encode()


D1 = dbody(1000)
D1_NUMBERS = b'{"side":"yes","delta_fp":-5,"market_ticker":"M","price_dollars":0.43,"ts_ms":1000}'
D2 = dbody(1000, side="no")


def test_norm_decimal() -> None:
    assert norm_decimal("0.4300") == norm_decimal(Decimal("0.43")) == norm_decimal("0.43") == "0.43"
    assert norm_decimal("5.00") == norm_decimal(5) == "5"
    assert norm_decimal("-0.00") == "0"
    assert norm_decimal("1E+2") == "100"
    assert norm_decimal("100") == "100"


def test_canonical_body_ignores_number_spelling_and_key_order() -> None:
    a = canonical(b'{"b":"0.4300","a":1,"c":[{"x":"2.50"}],"d":true,"e":null,"t":"KX-1"}')
    b = canonical(b'{"a":"1.0","c":[{"x":2.5}],"b":0.43,"e":null,"d":true,"t":"KX-1"}')
    assert a == b
    assert canonical(b'{"a":"0.43"}') != canonical(b'{"a":"0.44"}')


def test_delta_copies_agree_across_gatherers_and_spellings() -> None:
    g1, g2 = EventKeyer(), EventKeyer()
    assert g1.delta_body(D1)[1] == g2.delta_body(D1_NUMBERS)[1]
    assert g1.delta_body(D2)[1] != g2.delta_body(D1)[1]


def test_identical_deltas_of_one_millisecond_stay_two_events() -> None:
    g1, g2 = EventKeyer(), EventKeyer()
    k1 = [g1.delta_body(D1)[1], g1.delta_body(D1)[1]]
    k2 = [g2.delta_body(D1)[1], g2.delta_body(D1)[1]]
    assert k1 == k2
    assert k1[0] != k1[1] and k1[0].endswith(":1") and k1[1].endswith(":2")


def test_identical_bodies_apart_in_time_are_distinct_whatever_the_receive_times() -> None:
    """50 ms, 15 s and 10 min apart: the venue millisecond differs, so the keys do, on every gatherer alike. No
    receive clock is involved at all (the old keyer counted identical bodies in a receive-time window)."""
    g1, g2 = EventKeyer(), EventKeyer()
    times = [1_000, 1_050, 16_050, 616_050]
    k1 = [g1.delta_body(dbody(t))[1] for t in times]
    k2 = [g2.delta_body(dbody(t))[1] for t in reversed(times)]  # another gatherer, another order
    assert len(set(k1)) == 4 and set(k1) == set(k2)
    assert all(k.endswith(":1") for k in k1)


def test_a_gatherer_that_missed_the_first_twin_cannot_lose_an_event_another_gatherer_saw() -> None:
    """Documented hazard: g2 received only the second of two identical deltas, so it labels it n=1 (the first
    event's key). First-copy-wins over every copy still yields both events, because g1 delivered both keys."""
    g1, g2 = EventKeyer(), EventKeyer()
    full = [g1.delta_body(D1)[1], g1.delta_body(D1)[1]]
    partial = g2.delta_body(D1)[1]
    assert partial == full[0]
    surviving = set()
    for key in [partial, *full]:  # dedup: first copy wins per key, in any arrival order
        surviving.add(key)
    assert len(surviving) == 2


def test_counters_are_forgotten_by_venue_time_and_memory_is_bounded() -> None:
    g = EventKeyer(horizon_ms=1_000)
    for i in range(10_000):
        g.delta_body(dbody(i, delta_fp=f"{i}.00"))  # 1000 bodies per venue second
    assert g.tracked <= 1_600
    # a repeat of a body the venue clock has long passed (a copy that late) counts from 1 again
    assert g.delta_body(dbody(5, delta_fp="5.00"))[1].endswith(":1")


def test_ticker_keys() -> None:
    g1, g2 = EventKeyer(), EventKeyer()
    t1 = b'{"market_ticker":"M","yes_bid_dollars":"0.4300","volume_fp":"10.00","ts_ms":5}'
    t2 = b'{"ts_ms":5,"volume_fp":10,"yes_bid_dollars":0.43,"market_ticker":"M"}'
    assert g1.ticker_body(t1) == g2.ticker_body(t2)
    again = g1.ticker_body(t1)[1]
    assert again.startswith("k:") and again.endswith(":2")
    t3 = b'{"market_ticker":"M","yes_bid_dollars":"0.44","volume_fp":"10.00","ts_ms":5}'
    assert g2.ticker_body(t3)[1] != g2.ticker_body(t1)[1]
    assert g1.ticker_body(t1)[2] == 5


def test_snapshot_key_ignores_level_order_and_has_no_occurrence() -> None:
    a = msgspec.json.decode(
        b'{"market_ticker":"M","yes_dollars_fp":[["0.41","120.00"],["0.4300","15"]],"no_dollars_fp":[["0.55","40"]]}',
        type=SnapshotMsg,
        strict=False,
    )
    b = msgspec.json.decode(
        b'{"market_ticker":"M","yes_dollars_fp":[["0.43","15.00"],["0.4100","120"]],"no_dollars_fp":[["0.5500","40"]]}',
        type=SnapshotMsg,
        strict=False,
    )
    c = msgspec.json.decode(b'{"market_ticker":"M","yes_dollars_fp":[["0.43","16"]]}', type=SnapshotMsg, strict=False)
    assert EventKeyer.snapshot(a) == EventKeyer.snapshot(b)
    assert EventKeyer.snapshot(a) != EventKeyer.snapshot(c)
    assert EventKeyer.snapshot(a).count(":") == 1


# -- bad numbers are bad input: a ValueError naming the field, never anything else -----------------------------

BAD_NUMBERS = [
    ("price_dollars", "1E+1000000"),
    ("price_dollars", "NaN"),
    ("price_dollars", "-0.10"),
    ("price_dollars", "1.5"),
    ("delta_fp", "1E+1000000"),
    ("delta_fp", "-Infinity"),
    ("delta_fp", "9" * 5000),
    ("delta_fp", "1E-50"),
]


@pytest.mark.parametrize(("field", "value"), BAD_NUMBERS)
def test_out_of_range_numbers_raise_value_error_naming_the_field(field: str, value: str) -> None:
    body = {"market_ticker": "M", "price_dollars": "0.43", "delta_fp": "1.00", "side": "yes", "ts_ms": 1}
    body[field] = value
    raw = msgspec.json.encode(body)
    g = EventKeyer()
    with pytest.raises(ValueError, match=field):
        g.delta_body(raw)
    as_number = raw.replace(f'"{value}"'.encode(), value.encode()) if value[0] in "-19" else raw
    with pytest.raises(ValueError):
        g.delta_body(as_number)  # the same value as a JSON number (the Decimal path)
    if value in ("1E+1000000", "9" * 5000, "1E-50"):
        with pytest.raises(ValueError):
            canonical(raw)  # lifecycle bodies are canonicalised: numbers of no sane magnitude are refused too


def test_check_number_accepts_what_the_venue_sends() -> None:
    for text in ("0.4300", "1.0000", "0", "-12345.67", "99999999.99", "0.0001"):
        assert check_number(Decimal(text), "x") == Decimal(text)
    with pytest.raises(ValueError, match="ticker_field"):
        check_number(Decimal("1e30"), "ticker_field")


# -- the hot path (numbers kept as the venue's strings) agrees with the Decimal path -----------------------------

DELTA_BODIES = [
    D1,
    D1_NUMBERS,
    D2,
    b'{"market_ticker":"M","price_dollars":"0.43","delta_fp":-5,"side":"yes","ts_ms":1000}',  # mixed: Decimal path
    b'{"market_ticker":"M","price_dollars":" 0.4300","delta_fp":"-5.0E0","side":"no","ts":"2026-01-01T00:00:00Z"}',
    b'{"market_ticker":"M","price_dollars":"0.1","delta_fp":"-0","side":"yes","ts_ms":"7","extra":[1,{}]}',
]
BAD_DELTAS = [
    b'{"market_ticker":"M","price_dollars":"abc","delta_fp":"1","side":"yes"}',
    b'{"market_ticker":"M","price_dollars":"0.4","delta_fp":"1","side":"maybe"}',
    b'{"market_ticker":"M","price_dollars":null,"delta_fp":"1","side":"yes"}',
    b'{"market_ticker":"M","delta_fp":"1","side":"yes"}',
    b'{"market_ticker":"M","price_dollars":"0.4"',
]


def test_delta_body_equals_the_decimal_path() -> None:
    fast, ref = EventKeyer(), EventKeyer()
    for body in DELTA_BODIES * 2:  # twice: occurrence numbers advance alike
        market, key, _ = fast.delta_body(body)
        assert (market, key) == ("M", ref.delta(delta(body))), body
    for body in BAD_DELTAS:
        with pytest.raises(msgspec.DecodeError) as fast_err:
            fast.delta_body(body)
        with pytest.raises(msgspec.DecodeError) as ref_err:
            delta(body)
        assert str(fast_err.value) == str(ref_err.value)


def test_ticker_body_equals_the_decimal_path() -> None:
    dec = msgspec.json.Decoder(TickerMsg, strict=False)
    bodies = [
        b'{"market_ticker":"M","yes_bid_dollars":"0.4300","volume_fp":"10.00","ts_ms":5}',
        b'{"ts_ms":5,"volume_fp":10,"yes_bid_dollars":0.43,"market_ticker":"M"}',
        b'{"market_ticker":"M","market_id":"x","price_dollars":"0.5","yes_bid_dollars":null,"yes_ask_dollars":"0.51",'
        b'"yes_bid_size_fp":"3","yes_ask_size_fp":"4.50","last_trade_size_fp":"1","volume_fp":"12345.6700",'
        b'"open_interest_fp":"99","dollar_volume":"17","dollar_open_interest":18,"ts":1767225600,"ts_ms":"1767225600123",'
        b'"time":"2026-01-01T00:00:00Z"}',
    ]
    fast, ref = EventKeyer(), EventKeyer()
    for body in bodies * 2:
        market, key, _ = fast.ticker_body(body)
        assert (market, key) == ("M", ref.ticker(dec.decode(body))), body
    with pytest.raises(msgspec.DecodeError):
        fast.ticker_body(b'{"market_ticker":"M","volume_fp":"lots"}')


def test_number_cache_is_bounded_and_rechecks_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_NORM_MAX", 100)
    monkeypatch.setattr(keys, "_delta_parts", None)  # the Python path's cache (the C accelerator has none)
    g = EventKeyer()
    for i in range(1000):
        body = dbody(i, delta_fp=f"{i}.00", price=f"0.{i:04d}")
        assert g.delta_body(body)[1] == EventKeyer().delta(delta(body))
    assert len(keys._norm) <= 100
    g.delta_body(dbody(1, delta_fp="5.00"))  # "5.00" is now cached as a valid size ...
    with pytest.raises(ValueError, match="price_dollars"):
        g.delta_body(dbody(1, price="5.00"))  # ... and still refused as a price
