"""The C accelerator of delta keys (venues/kalshi/_deltakey.c) against the Python paths of venues.kalshi.keys.

The accelerator may handle a body or hand it back (None); whatever it handles must get exactly the key, market and
venue time the Python paths give, and every body the Python paths reject must be handed back (so the same error is
raised). The bodies are generated around the venue's shape: number spellings (plain, signed, zero-padded, exponents,
JSON numbers, too long, out of range), missing, null, repeated and extra fields, escapes, non-ASCII, whitespace,
truncation.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gatherer.hot_path import messages
from venues.kalshi import keys
from venues.kalshi.keys import EventKeyer

pytestmark = pytest.mark.skipif(not keys.ACCELERATED, reason="venues.kalshi._deltakey was not built (no C compiler)")

if keys.ACCELERATED:
    from venues.kalshi import _deltakey  # type: ignore[attr-defined]


def _python_result(body: bytes) -> tuple[str, Any]:
    """What the Python paths make of ``body``: ("ok", (market, key, ms)) or ("error", (type, message))."""
    saved = keys._delta_parts
    keys._delta_parts = None
    try:
        return "ok", EventKeyer().delta_body(body)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    finally:
        keys._delta_parts = saved


def _accelerated_result(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", EventKeyer().delta_body(body)
    except Exception as exc:
        return "error", (type(exc), str(exc))


def _check(body: bytes) -> bool:
    """Same outcome either way; returns whether the accelerator handled the body itself."""
    handled = _deltakey.delta_parts(body) is not None
    assert _accelerated_result(body) == _python_result(body), body
    return handled


def test_blake2b_matches_hashlib_around_block_sizes() -> None:
    for n in (0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 1000):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        assert _deltakey.blake2b8_hex(data) == hashlib.blake2b(data, digest_size=8).hexdigest()


@given(st.binary(max_size=600))
def test_blake2b_matches_hashlib(data: bytes) -> None:
    assert _deltakey.blake2b8_hex(data) == hashlib.blake2b(data, digest_size=8).hexdigest()


def test_the_emulators_deltas_take_the_c_path_with_the_same_keys() -> None:
    """The venue's common shape is what the accelerator is for: every delta the emulator sends is handled in C, and
    a whole stream (occurrence counters included) gets the Python paths' keys."""
    bodies = [json.loads(m)["msg"] for m in messages(5000) if b'"orderbook_delta"' in m]
    raw = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    assert raw and all(_deltakey.delta_parts(b) is not None for b in raw)
    fast = EventKeyer()
    saved = keys._delta_parts
    keys._delta_parts = None
    try:
        slow = EventKeyer()
        expected = [slow.delta_body(b) for b in raw]
    finally:
        keys._delta_parts = saved
    assert [fast.delta_body(b) for b in raw] == expected


@pytest.mark.parametrize(
    ("price", "size", "handled"),
    [
        ("0.4500", "8.00", True),
        ("0", "0", True),
        ("1", "-12.50", True),
        ("1.000", "-0.00", True),
        ("00.50", "007", True),
        ("0.000000000000000001", "999999999999999", True),
        ("0.5", "123456789012345.123456789012345678", True),  # 33 significant digits: both paths keep every one
        ("0.5", "100000000000000.000000000000000001", True),
        ("1.5", "1", False),  # price above 1: the Python path raises
        ("-0.5", "1", False),  # negative price
        ("-0.0", "1", False),  # a signed zero price: left to the Python path
        ("0.0000000000000000001", "1", False),  # finer than 1e-18
        ("0.5", "1000000000000000", False),  # the size bound itself: left to the Python path
        ("0.5", "10000000000000000", False),  # above it
        ("0.5e0", "1", False),
        ("+0.5", "1", False),
        (".5", "1", False),
        ("5.", "1", False),
        (" 0.5", "1", False),
        ("0.5", "1" * 41, False),
        ("NaN", "1", False),
        ("0,5", "1", False),
    ],
)
def test_number_spellings(price: str, size: str, handled: bool) -> None:
    body = {"market_ticker": "KX-A", "price_dollars": price, "delta_fp": size, "side": "no", "ts_ms": 1700000000123}
    assert _check(json.dumps(body).encode()) is handled


@pytest.mark.parametrize(
    "body",
    [
        b'{"market_ticker":"KX-A","price_dollars":0.5,"delta_fp":"1","side":"yes","ts_ms":1}',  # a JSON number
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts":"2026-01-01T00:00:00Z"}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":null}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":"17"}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1.0}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"maybe","ts_ms":1}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","ts_ms":1}',
        b'{"market_ticker":"KX-A","market_ticker":"KX-B","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1}',
        b'{"market_ticker":"KX-\\u0041","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1}',
        '{"market_ticker":"KX-\u00e9","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1}'.encode(),
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,"x":{"y":1}}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,"x":[1]}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,"market_id":null}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,"ts":5}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":01}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1} x',
        b'{"market_ticker":"' + b"K" * 257 + b'","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":12345678901234567890}',
        b"[]",
        b"{}",
        b"null",
    ],
)
def test_other_shapes_are_handed_to_the_python_paths(body: bytes) -> None:
    assert _check(body) is False


@pytest.mark.parametrize(
    "body",
    [
        b' { "market_ticker" : "KX-A" , "price_dollars" : "0.5", "delta_fp":"1","side":"yes","ts_ms":-0 }\n',
        b'{"side":"no","ts_ms":0,"delta_fp":"-3","price_dollars":"1","market_ticker":"KX-A","extra":true,"z":null}',
        b'{"market_ticker":"KX-A","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":-5,"ts":null,"n":-1.5e3}',
        b'{"market_ticker":"","price_dollars":"0.5","delta_fp":"1","side":"yes","ts_ms":1,"market_id":"m"}',
    ],
)
def test_unusual_but_handled_shapes(body: bytes) -> None:
    assert _check(body) is True


_DIGITS = st.text("0123456789", min_size=1, max_size=22)
_NUMBER_TEXT = st.one_of(
    st.builds(lambda s, i, f: f"{s}{i}.{f}", st.sampled_from(["", "-", "+"]), _DIGITS, _DIGITS),
    st.builds(lambda s, i: f"{s}{i}", st.sampled_from(["", "-"]), _DIGITS),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text("0123456789.-+eE ", max_size=12),
)
_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.text(max_size=8)
)


_PLAIN_PRICE = st.builds(
    lambda i, f: f"{i}.{f}", st.sampled_from(["0", "00", "1"]), st.text("0123456789", min_size=1, max_size=19)
) | st.sampled_from(["0", "1", "0.45"])
_PLAIN_SIZE = st.builds(lambda s, i: f"{s}{i}", st.sampled_from(["", "-"]), _DIGITS)
_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)


@st.composite
def _delta_bodies(draw: st.DrawFn) -> bytes:
    """Half of them in the venue's plain shape (numbers near the bounds, ASCII text), the rest anything."""
    if draw(st.booleans()):
        body: dict[str, Any] = {
            "market_ticker": draw(st.sampled_from(["KX-A", "KXSIM-E1-M10", ""]) | _ASCII),
            "price_dollars": draw(_PLAIN_PRICE),
            "delta_fp": draw(_PLAIN_SIZE),
            "side": draw(st.sampled_from(["yes", "no"])),
            "ts_ms": draw(st.integers(-(10**15), 10**15) | st.sampled_from([1767225600000, 0])),
        }
        for name in ("market_id", "ts", "extra"):
            if draw(st.booleans()):
                body[name] = draw(_ASCII | st.none() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False))
        return json.dumps(body, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()
    body = {
        "market_ticker": draw(st.sampled_from(["KX-A", ""]) | st.text(max_size=6)),
        "price_dollars": draw(_NUMBER_TEXT | _SCALAR),
        "delta_fp": draw(_NUMBER_TEXT | _SCALAR),
        "side": draw(st.sampled_from(["yes", "no", "YES"]) | _SCALAR),
        "ts_ms": draw(st.integers(-(10**19), 10**19) | _SCALAR),
    }
    for name in ("market_id", "ts", "extra"):
        if draw(st.booleans()):
            body[name] = draw(_SCALAR | st.text(max_size=4))
    for name in list(body):
        if draw(st.sampled_from(range(10))) == 0:
            del body[name]
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    if draw(st.sampled_from(range(10))) == 0:  # a repeated field
        text = text[:-1] + ', "side": "yes"}'
    if draw(st.sampled_from(range(20))) == 0:  # cut short
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_delta_bodies())
def test_generated_bodies_get_the_python_paths_outcome(body: bytes) -> None:
    _check(body)


# -- ticker bodies -------------------------------------------------------------------------------------------------


def _python_ticker(body: bytes) -> tuple[str, Any]:
    saved = keys._ticker_parts
    keys._ticker_parts = None
    try:
        return "ok", EventKeyer().ticker_body(body)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    finally:
        keys._ticker_parts = saved


def _check_ticker(body: bytes) -> bool:
    handled = _deltakey.ticker_parts(body) is not None
    try:
        fast: tuple[str, Any] = "ok", EventKeyer().ticker_body(body)
    except Exception as exc:
        fast = "error", (type(exc), str(exc))
    assert fast == _python_ticker(body), body
    return handled


def test_the_emulators_tickers_take_the_c_path_with_the_same_keys() -> None:
    bodies = [json.loads(m)["msg"] for m in messages(5000) if b'"type":"ticker"' in m]
    raw = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    assert raw and all(_deltakey.ticker_parts(b) is not None for b in raw)
    fast = EventKeyer()
    saved = keys._ticker_parts
    keys._ticker_parts = None
    try:
        slow = EventKeyer()
        expected = [slow.ticker_body(b) for b in raw]
    finally:
        keys._ticker_parts = saved
    assert [fast.ticker_body(b) for b in raw] == expected


_TICKER = {
    "market_ticker": "KX-A",
    "market_id": "m-1",
    "price_dollars": "0.9900",
    "yes_bid_dollars": "0.0000",
    "yes_ask_dollars": "1.0000",
    "yes_bid_size_fp": "0.00",
    "yes_ask_size_fp": "-3.50",
    "last_trade_size_fp": "5.00",
    "volume_fp": "5.00",
    "open_interest_fp": "5.00",
    "dollar_volume": 4,
    "dollar_open_interest": 4,
    "ts": 1767225600,
    "ts_ms": 1767225600003,
    "time": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "handled"),
    [
        ({}, True),
        ({"market_id": None}, False),  # null where a str is required: the Python path raises
        ({"market_id": 5}, False),
        ({"price_dollars": None, "volume_fp": None, "dollar_volume": None, "ts": None}, True),
        ({"price_dollars": "1.01"}, False),
        ({"yes_bid_dollars": 0.5}, False),  # a JSON number
        ({"volume_fp": "1000000000000000"}, False),
        ({"volume_fp": "123456789012345.123456789012345678"}, True),  # 33 significant digits, every one kept
        ({"dollar_volume": "4"}, False),
        ({"dollar_volume": 4.0}, False),
        ({"dollar_volume": -0}, True),
        ({"dollar_volume": 10**19}, False),
        ({"ts_ms": None}, False),
        ({"ts": True}, False),
        ({"time": {"nested": 1}}, False),
    ],
)
def test_ticker_shapes(change: dict[str, Any], handled: bool) -> None:
    assert _check_ticker(json.dumps({**_TICKER, **change}).encode()) is handled


@pytest.mark.parametrize("drop", sorted(_TICKER))
def test_ticker_without_a_field(drop: str) -> None:
    body = {k: v for k, v in _TICKER.items() if k != drop}
    assert _check_ticker(json.dumps(body).encode()) is (drop not in ("market_ticker", "ts_ms"))


_TICKER_NUMBERS = [n for n in _TICKER if n.endswith(("_dollars", "_fp"))]


@st.composite
def _ticker_bodies(draw: st.DrawFn) -> bytes:
    """The venue's ticker with some fields changed: plain numbers near the bounds, or anything."""
    body = dict(_TICKER)
    for name in draw(st.lists(st.sampled_from(sorted(_TICKER)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del body[name]
        elif name in _TICKER_NUMBERS:
            body[name] = draw(_PLAIN_PRICE | _PLAIN_SIZE | _NUMBER_TEXT | _SCALAR)
        else:
            body[name] = draw(_ASCII | _SCALAR)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ticker_bodies())
def test_generated_tickers_get_the_python_paths_outcome(body: bytes) -> None:
    _check_ticker(body)
