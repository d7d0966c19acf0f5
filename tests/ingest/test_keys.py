"""Event keys: equal for copies of one venue event, different for distinct events; merge/split cases."""

from __future__ import annotations

from decimal import Decimal

import msgspec

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
