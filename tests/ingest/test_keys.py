"""Event keys: equal for copies of one venue event, different for distinct events; merge/split cases."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from ingest import keys
from ingest.keys import EventKeyer, canonical, norm_decimal
from schemas.kalshi import DeltaMsg, SnapshotMsg, TickerMsg

S = 1_000_000_000


def delta(body: bytes) -> DeltaMsg:
    return msgspec.json.decode(body, type=DeltaMsg, strict=False)


D1 = b'{"market_ticker":"M","price_dollars":"0.4300","delta_fp":"-5.00","side":"yes","ts_ms":1000}'
D1_NUMBERS = b'{"side":"yes","delta_fp":-5,"market_ticker":"M","price_dollars":0.43,"ts_ms":1000}'
D2 = b'{"market_ticker":"M","price_dollars":"0.4300","delta_fp":"-5.00","side":"no","ts_ms":1000}'


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
    assert g1.delta(delta(D1), 1 * S) == g2.delta(delta(D1_NUMBERS), 1 * S)
    assert g1.delta(delta(D2), 1 * S) != g2.delta(delta(D1), 1 * S)


def test_identical_deltas_stay_two_events() -> None:
    g1, g2 = EventKeyer(), EventKeyer()
    k1 = [g1.delta(delta(D1), 1 * S), g1.delta(delta(D1), 1 * S)]
    k2 = [g2.delta(delta(D1), 1 * S), g2.delta(delta(D1), 1 * S)]
    assert k1 == k2
    assert k1[0] != k1[1] and k1[0].endswith(":1") and k1[1].endswith(":2")


def test_gatherer_that_missed_the_first_identical_delta_merges_its_second() -> None:
    """Documented MERGE case: g2 missed copy 1, so its copy of event 2 carries event 1's key."""
    g1, g2 = EventKeyer(), EventKeyer()
    full = [g1.delta(delta(D1), S), g1.delta(delta(D1), S)]
    partial = g2.delta(delta(D1), S)
    assert partial == full[0]
    # dedup still sees both events because g1 delivered both keys
    assert set(full) | {partial} == set(full)


def test_window_expiry_restarts_counting_split_case() -> None:
    """Documented SPLIT case: counters expire after the window, so a late repeat starts at n=1 again."""
    g = EventKeyer(window_s=10.0)
    first = g.delta(delta(D1), 1 * S)
    assert g.delta(delta(D1), 2 * S).endswith(":2")
    assert g.delta(delta(D1), 40 * S) == first
    assert g.tracked <= 2


def test_memory_is_bounded_by_window() -> None:
    g = EventKeyer(window_s=1.0)
    for i in range(10_000):
        body = f'{{"market_ticker":"M","price_dollars":"0.43","delta_fp":"{i}","side":"yes","ts_ms":{i}}}'
        g.delta(delta(body.encode()), i * S // 1000)  # 1000 bodies per second
    assert g.tracked <= 1500


def test_ticker_and_lifecycle_keys() -> None:
    g1, g2 = EventKeyer(), EventKeyer()
    t1 = b'{"market_ticker":"M","yes_bid_dollars":"0.4300","volume_fp":"10.00","ts_ms":5}'
    t2 = b'{"ts_ms":5,"volume_fp":10,"yes_bid_dollars":0.43,"market_ticker":"M"}'
    assert g1.body("k", "M", t1, S) == g2.body("k", "M", t2, S)
    dec = msgspec.json.Decoder(TickerMsg, strict=False)
    assert g1.ticker(dec.decode(t1), S) == g2.ticker(dec.decode(t2), S)
    again = g1.ticker(dec.decode(t1), S)
    assert again.startswith("k:") and again.endswith(":2")
    t3 = b'{"market_ticker":"M","yes_bid_dollars":"0.44","volume_fp":"10.00","ts_ms":5}'
    assert g2.ticker(dec.decode(t3), S) != g2.ticker(dec.decode(t1), S)
    lc = b'{"market_ticker":"M","event_type":"settled","settled_ts":7}'
    assert g1.body("l", "M", lc, S) == g2.body("l", "M", lc, S)
    assert g1.body("l", "M", lc, S) != g2.body(
        "l", "M", b'{"market_ticker":"M","event_type":"settled","settled_ts":8}', S
    )


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


# -- the hot path (numbers kept as the venue's strings) agrees with the Decimal path -----------------------------

DELTA_BODIES = [
    D1,
    D1_NUMBERS,
    D2,
    b'{"market_ticker":"M","price_dollars":"0.43","delta_fp":-5,"side":"yes","ts_ms":1000}',  # mixed: Decimal path
    b'{"market_ticker":"M","price_dollars":" 0.4300","delta_fp":"-5.0E0","side":"no","ts":"2026-01-01T00:00:00Z"}',
    b'{"market_ticker":"M","price_dollars":"1_000","delta_fp":"-0","side":"yes","ts_ms":"7","extra":[1,{}]}',
    b'{"market_ticker":"M","price_dollars":"NaN","delta_fp":"1E+2","side":"yes"}',
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
    for i, body in enumerate(DELTA_BODIES * 2):  # twice: occurrence numbers advance alike
        market, key = fast.delta_body(body, i * S // 10)
        assert (market, key) == ("M", ref.delta(delta(body), i * S // 10)), body
    for body in BAD_DELTAS:
        with pytest.raises(msgspec.DecodeError) as fast_err:
            fast.delta_body(body, S)
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
    for i, body in enumerate(bodies * 2):
        assert fast.ticker_body(body, i * S) == ("M", ref.ticker(dec.decode(body), i * S)), body
    with pytest.raises(msgspec.DecodeError):
        fast.ticker_body(b'{"market_ticker":"M","volume_fp":"lots"}', S)


def test_number_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_NORM_MAX", 100)
    g = EventKeyer()
    for i in range(1000):
        body = f'{{"market_ticker":"M","price_dollars":"0.{i:04d}","delta_fp":"{i}.00","side":"yes","ts_ms":{i}}}'
        assert g.delta_body(body.encode(), S) == ("M", EventKeyer().delta(delta(body.encode()), S))
    assert len(keys._norm) <= 100
