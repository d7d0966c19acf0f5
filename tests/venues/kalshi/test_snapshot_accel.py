"""The C accelerator of snapshot keys (``_deltakey.snapshot_parts``) against ``EventKeyer.snapshot_body``'s Python
path (the accelerator switched off).

Whatever the accelerator handles must get exactly the market and key the Python path gives; every body it does not
handle is handed back (None), and the Python path decides, errors included. Bodies are generated around the venue's
shape: levels in any order, ties, number spellings (padded, signed, exponents, JSON numbers, too long, out of range),
extra fields with nested values, repeated fields, escapes, whitespace, truncation.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import venues
from venues.kalshi import keys
from venues.kalshi.emulator.levels import snapshot_json, wire_levels
from venues.kalshi.keys import EventKeyer

pytestmark = pytest.mark.skipif(not keys.ACCELERATED, reason="venues.kalshi._deltakey was not built (no C compiler)")


def test_the_extension_is_built_from_the_current_sources() -> None:
    assert keys._snapshot_parts is not None, "venues.kalshi._deltakey is older than its source: reinstall mdpipe"


def test_a_build_older_than_the_function_counts_as_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m ops.accelerators`` (the image build's check) names a stale extension, not only a missing one."""
    assert venues.get_venue("kalshi").accelerators() == {"venues.kalshi._deltakey": True}
    monkeypatch.setattr(keys, "_snapshot_parts", None)
    assert venues.get_venue("kalshi").accelerators() == {"venues.kalshi._deltakey": False}


MAX_TICKER = 40


def _check_market(market: str) -> None:  # as the session's check
    if len(market) > MAX_TICKER:
        raise ValueError(f"market_ticker: {len(market)} characters")


def _outcome(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", EventKeyer.snapshot_body(body, _check_market)
    except Exception as exc:
        return "error", (type(exc), str(exc))


def _python_outcome(body: bytes) -> tuple[str, Any]:
    saved = keys._snapshot_parts
    keys._snapshot_parts = None
    try:
        return _outcome(body)
    finally:
        keys._snapshot_parts = saved


def _check(body: bytes) -> bool:
    """Same outcome either way; returns whether the accelerator handled the body itself."""
    handled = keys._snapshot_parts(body) is not None
    assert _outcome(body) == _python_outcome(body), body
    return handled


def test_the_emulators_snapshots_take_the_c_path_with_the_same_keys() -> None:
    rng = random.Random(7)
    bodies = []
    for i in range(300):
        slots = [rng.choice([0, rng.randrange(1, 900_000)]) for _ in range(20)]
        yes, no = wire_levels(rng.randrange(12, 88), slots, use_yes_price=bool(i % 2))
        bodies.append(snapshot_json(f"KXSIM-E{i}-M{i}", f"id-{i}", yes, no).encode())
    assert all(_check(body) for body in bodies)
    assert len({_outcome(body)[1][1] for body in bodies}) == len(bodies)


@pytest.mark.parametrize(
    "body",
    [
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.9","1"],["0.10","1"],["0.09","1"]],"no_dollars_fp":[]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","5"],["0.43","40"],["0.43","100"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","-1"],["0.43","-10"],["0.2","-3"],["0.2","0"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","100"],["0.4300","100.00"],["00.43","0100"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0","1"],["1","1"],["1.000","2"],["0.000","-0"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.5","99.5"],["0.5","100"],["0.5","99.45"],["0.5","9.9"]]}',
        b'{"market_ticker":"KX-A","no_dollars_fp":[["0.01","1.5"]],"market_id":"x","yes_dollars_fp":[]}',
        b' { "market_ticker" : "KX-A" , "yes_dollars_fp" : [ [ "0.4" , "1" ] ] } \n',
        b'{"market_ticker":"KX-A","extra":{"a":[1,{"b":null}],"c":"d"},"more":[true,false,-1.5e3]}',
        b'{"market_ticker":"KX-A"}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":null}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[[0.43,100]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["4.3E-1","1E+2"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["1.5","1"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["-0.1","1"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","1000000000000000"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","1.0000000000000000001"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.43","1","2"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["abc","1"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.4","1"]],"yes_dollars_fp":[["0.5","1"]]}',
        b'{"market_ticker":"KX\\u002dA","yes_dollars_fp":[]}',
        b'{"market_ticker":"KX-A","market_id":null}',
        b'{"market_ticker":"KX-A","market_id":5}',
        b'{"market_ticker":5}',
        b'{"market_ticker":"' + b"K" * 41 + b'","yes_dollars_fp":[["NaN","1"]]}',
        b'{"market_ticker":"KX-A","yes_dollars_fp":[["0.4","1"]]',
        b'{"market_ticker":"KX-A"} x',
        b"{}",
        b"[]",
        b"",
    ],
)
def test_shapes(body: bytes) -> None:
    _check(body)


_PLAIN_PRICE = st.builds(lambda f: f"0.{f}", st.text("0123456789", min_size=1, max_size=6))
_PLAIN_SIZE = st.builds(
    lambda sign, i, f: f"{sign}{i}.{f}" if f else f"{sign}{i}",
    st.sampled_from(["", "", "", "-"]),
    st.text("0123456789", min_size=1, max_size=17),
    st.text("0123456789", max_size=20),
)
_PRICE = st.one_of(
    _PLAIN_PRICE,
    _PLAIN_PRICE,
    _PLAIN_PRICE,
    st.sampled_from(["0", "1", "1.00", "0.5", "0.50", "00.5", "5E-1", "-0.0", "+0.1", "1.01", "2"]),
)
_SIZE = st.one_of(_PLAIN_SIZE, _PLAIN_SIZE, _PLAIN_SIZE, st.sampled_from(["-0", "1E+2", "0", "1.", ".5", " 1"]))
_ODD = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)


@st.composite
def _side(draw: st.DrawFn) -> list[Any]:
    levels: list[Any] = [list(level) for level in draw(st.lists(st.tuples(_PRICE, _SIZE), max_size=14))]
    if levels and draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, len(levels) - 1))
        levels[i][draw(st.integers(0, 1))] = draw(_ODD)
    if levels and draw(st.integers(0, 7)) == 0:
        levels.append(levels[draw(st.integers(0, len(levels) - 1))])  # a repeated level
    return levels


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    market = draw(st.sampled_from(["KX-A", "KXSIM-E1-M10", "KX-B", "", "K" * 41, "KX-é"]))
    fields: list[tuple[str, Any]] = [("market_ticker", market)]
    if draw(st.booleans()):
        fields.append(("market_id", draw(st.sampled_from(["", "abc-1", "id-2", "é"]))))
    for side in ("yes_dollars_fp", "no_dollars_fp"):
        if draw(st.integers(0, 4)):
            fields.append((side, draw(_side())))
    if draw(st.integers(0, 6)) == 0:
        fields.append(("extra", draw(st.recursive(st.none() | st.integers() | st.text(max_size=4), st.lists))))
    fields = draw(st.permutations(fields))
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields) + "}"
    if draw(st.integers(0, 9)) == 0:
        text = text.replace(",", draw(st.sampled_from([" , ", ",\n", ",,"])))
    if draw(st.integers(0, 19)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body())
def test_any_body_gets_the_python_paths_market_and_key_or_error(body: bytes) -> None:
    _check(body)


def test_the_generated_bodies_mostly_take_the_c_path() -> None:
    """A guard on the test above: the accelerator must handle most of what it is compared on, not hand it all back."""
    rng = random.Random(3)
    handled = 0
    for i in range(400):
        yes = [[f"0.{rng.randrange(1, 99):02d}", f"{rng.randrange(10**6)}.{rng.randrange(100):02d}"] for _ in range(8)]
        no = [[f"0.{rng.randrange(1, 99)}", str(rng.randrange(-5, 10**4))] for _ in range(rng.randrange(0, 8))]
        handled += _check(json.dumps({"market_ticker": f"KX-{i}", "yes_dollars_fp": yes, "no_dollars_fp": no}).encode())
    assert handled == 400
