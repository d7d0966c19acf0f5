"""Snapshot keys from the venue's strings (``EventKeyer.snapshot_body``) against the Decimal path (decode to
``SnapshotMsg``, check the market, ``EventKeyer.snapshot``): the same market and key for every body the Decimal path
takes, the same error (type and message) for every body it refuses, but one (a body that repeats a key, below).
Bodies are generated around the venue's shape: levels in any order, repeated and numerically equal levels, number
spellings (padded, signed, exponents, JSON numbers, too long, out of range, not numbers), odd level shapes, a market
the session refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from venues.kalshi import keys
from venues.kalshi.keys import EventKeyer
from venues.kalshi.messages import SnapshotMsg

MAX_TICKER = 12


def _check_market(market: str) -> None:  # as the session's check: a ValueError before any number is looked at
    if len(market) > MAX_TICKER:
        raise ValueError(f"market_ticker: {len(market)} characters")


def _decimal_path(body: bytes) -> tuple[str, Any]:
    try:
        m = keys._snapshot.decode(body)
        _check_market(m.market_ticker)
        return "ok", (m.market_ticker, EventKeyer.snapshot(m))
    except Exception as exc:
        return "error", (type(exc), str(exc))


def _text_path(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", EventKeyer.snapshot_body(body, _check_market)
    except Exception as exc:
        return "error", (type(exc), str(exc))


def _snapshot(market: str, yes: list[Any], no: list[Any]) -> bytes:
    return json.dumps({"market_ticker": market, "yes_dollars_fp": yes, "no_dollars_fp": no}).encode()


def test_the_venues_shape() -> None:
    body = _snapshot("KX-A", [["0.4300", "100.00"], ["0.0100", "5.00"]], [["0.5500", "7.00"]])
    assert _text_path(body) == _decimal_path(body)
    market, key = EventKeyer.snapshot_body(body, _check_market)
    assert market == "KX-A" and key == EventKeyer.snapshot(msgspec_decode(body))


def test_a_number_cached_as_a_size_is_still_checked_as_a_price(monkeypatch: pytest.MonkeyPatch) -> None:
    # the number cache is shared by every field: "1.5" and "2" pass as sizes, then arrive as prices (out of range)
    monkeypatch.setattr(keys, "_norm", {None: ""})
    for price in ("1.5", "2", "1.0001"):
        sized = _snapshot("KX-A", [["0.43", price]], [])
        assert _text_path(sized) == _decimal_path(sized) and _text_path(sized)[0] == "ok"
        priced = _snapshot("KX-A", [[price, "1"]], [])
        assert _text_path(priced) == _decimal_path(priced) and _text_path(priced)[0] == "error"


def test_a_repeated_key_is_the_one_known_difference() -> None:
    # both decoders keep the last copy; the Decimal one also refuses an earlier copy that is not a number
    body = b'{"market_ticker":"A","yes_dollars_fp":[["abc","1"]],"yes_dollars_fp":[["0.4","1"]]}'
    assert _decimal_path(body)[0] == "error"
    last = b'{"market_ticker":"A","yes_dollars_fp":[["0.4","1"]]}'
    assert _text_path(body) == _text_path(last) == _decimal_path(last)


def msgspec_decode(body: bytes) -> SnapshotMsg:
    return keys._snapshot.decode(body)


@pytest.mark.parametrize(
    "yes",
    [
        [["0.43", "100"], ["0.4300", "100.00"]],  # one value, two spellings: ties
        [["0.43", "5"], ["0.43", "40"], ["0.43", "100"]],  # one price, sizes whose text order is not their order
        [["0.9", "1"], ["0.10", "1"], ["0.09", "1"]],  # prices out of order
        [["0.43", "-1"], ["0.43", "-10"], ["0.2", "-3"]],  # signed sizes: text order is not their order
        [["4.3E-1", "1E+2"], ["0.43", "100"]],  # exponents
        [[0.43, 100]],  # JSON numbers: the Decimal path
        [["0.43", 100]],  # mixed
        [["1.5", "1"]],  # a price out of range
        [["0.43", "-1"]],  # a negative size: in the sizes' range
        [["NaN", "1"]],
        [["0.43", "1E+1000000"]],
        [["0.43", "1" * 60]],  # too long a spelling
        [["0.43", "1" * 30]],  # long but a number
        [["abc", "1"]],
        [["0.43"]],  # a level of one number
        [["0.43", "1", "2"]],
        [],
    ],
)
def test_levels(yes: list[Any]) -> None:
    body = _snapshot("KX-A", yes, [["0.20", "3"]])
    assert _text_path(body) == _decimal_path(body)


def test_a_refused_market_is_refused_before_the_numbers() -> None:
    body = _snapshot("KX-" + "A" * 20, [["NaN", "1"]], [])
    assert _text_path(body) == _decimal_path(body)
    assert _text_path(body)[1][1].startswith("market_ticker")


_DIGITS = st.text("0123456789", min_size=1, max_size=20)
_PRICE = st.one_of(
    st.builds(lambda f: f"0.{f}", st.text("0123456789", min_size=1, max_size=6)),
    st.sampled_from(["0", "1", "1.00", "0.5", "0.50", "5E-1", "-0.0", "+0.1"]),
)
_SIZE = st.one_of(
    st.builds(lambda i, f: f"{i}.{f}", _DIGITS, st.text("0123456789", min_size=1, max_size=4)),
    _DIGITS,
    st.sampled_from(["-1", "1E+2", "1e2", "0", "-0"]),
)
_ODD = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text("0123456789.-+eE", max_size=12),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)
_NUMBER = st.one_of(_PRICE, _SIZE, _ODD)


@st.composite
def _side(draw: st.DrawFn) -> list[Any]:
    if draw(st.integers(0, 9)) == 0:  # anything at all
        return draw(st.lists(st.lists(_NUMBER, max_size=3), max_size=4))
    levels = draw(st.lists(st.tuples(_PRICE, _SIZE), max_size=12))
    out: list[Any] = [list(level) for level in levels]
    if out and draw(st.integers(0, 3)) == 0:  # a level with an odd number
        i = draw(st.integers(0, len(out) - 1))
        out[i][draw(st.integers(0, 1))] = draw(_ODD)
    return out


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    market=st.sampled_from(["KX-A", "KXSIM-E1-M10", "", "K" * 13]),
    yes=_side(),
    no=_side(),
)
def test_any_snapshot_gets_the_decimal_paths_key_or_error(market: str, yes: list[Any], no: list[Any]) -> None:
    body = _snapshot(market, yes, no)
    assert _text_path(body) == _decimal_path(body), body


def test_the_number_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_NORM_MAX", 8)
    monkeypatch.setattr(keys, "_order", {})
    for i in range(40):
        body = _snapshot("KX-A", [[f"0.{i:02d}", str(i + 1)]], [])
        assert _text_path(body) == _decimal_path(body)
        assert len(keys._order) <= 8
