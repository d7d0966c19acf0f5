"""The native dedup engine's encoded events (``dedup_stream.normalise.decision_bytes``, through
``venues.kalshi.event_bytes``) against the normaliser's path (``encode_event(decision_event(...))``): the same bytes
for every frame, or the same error.

Streams: the pipeline's mix of kinds from the synthetic venue (every delta, ticker and trade must take the fast path);
hand-picked bodies the fast path must hand back (decimals as JSON numbers, exponents, leading zeros, whitespace,
too many fraction digits, no envelope type, values the codec cannot represent); and generated bodies around the
venue's shape, the same decimal texts seen more than once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup_stream.logic import Decision, Verdict
from dedup_stream.normalise import decision_bytes, decision_event
from dedup_stream.synth import gatherer_copies, pipeline_events
from schemas import RawFrame, encode_event
from venues.kalshi.event_bytes import event_bytes

DELTA = {
    "market_ticker": "KX-A",
    "market_id": "m-1",
    "price_dollars": "0.4500",
    "delta_fp": "-8.00",
    "side": "yes",
    "ts_ms": 1767225600000,
}
TICKER = {
    "market_ticker": "KX-A",
    "price_dollars": "0.45",
    "yes_bid_dollars": "0.44",
    "yes_ask_dollars": "0.46",
    "volume_fp": "10.00",
    "dollar_volume": 4,
    "ts": 1767225600,
    "ts_ms": 1767225600003,
}
TRADE = {
    "trade_id": "t-1",
    "market_ticker": "KX-A",
    "yes_price_dollars": "0.45",
    "no_price_dollars": "0.55",
    "count_fp": "3.00",
    "taker_side": "yes",
    "ts": 1767225600,
}
TYPES = {"delta": "orderbook_delta", "ticker": "ticker", "trade": "trade"}


def _frame(kind: str, payload: bytes, **extra: Any) -> RawFrame:
    fields: dict[str, Any] = {"venue": "kalshi", "gatherer": "g2", "conn": 1, "sid": 3, "seq": 7}
    fields["recv_ns"] = 1_767_225_600_123_456_789
    fields.update(kind=kind, market="KX-A", event_key=f"{kind[0]}:abc:0", payload=payload)
    return RawFrame(**{**fields, **extra})


def _payload(kind: str, msg: dict[str, Any], envelope_type: str | None = "") -> bytes:
    env: dict[str, Any] = {"sid": 3, "seq": 7, "msg": msg}
    if envelope_type is not None:
        env = {"type": envelope_type or TYPES[kind], **env}
    return json.dumps(env).encode()


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "bytes", call()
    except Exception as exc:  # the engine dead-letters with type and message: both must match
        return "error", (type(exc).__name__, str(exc))


def assert_same(frame: RawFrame, verdict: Verdict = Verdict.WON) -> None:
    decision = Decision(verdict, frame)
    old = _outcome(lambda: encode_event(decision_event(decision, 1_767_225_600_200, 1_767_225_600_300_000_000)))
    new = _outcome(lambda: decision_bytes(decision, 1_767_225_600_200, 1_767_225_600_300_000_000))
    assert new == old, frame.payload


def test_the_pipeline_mix_takes_the_fast_path_with_the_same_bytes() -> None:
    frames = gatherer_copies(pipeline_events(3_000, markets=500, seed=5), "g1")
    kinds = {f.kind for f in frames}
    assert {"delta", "ticker", "trade", "snapshot", "lifecycle"} <= kinds
    for frame in frames:
        fast = event_bytes(frame, 1, 2)
        assert (fast is not None) == (frame.kind in ("delta", "ticker", "trade")), frame
        for verdict in (Verdict.WON, Verdict.REEMIT):
            assert_same(frame, verdict)


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("delta", {}),
        ("delta", {"price_dollars": 0.45}),  # a JSON number: Decimal takes it, the text path does not
        ("delta", {"delta_fp": "1e2"}),
        ("delta", {"delta_fp": "1E-7"}),
        ("delta", {"price_dollars": "00.45"}),
        ("delta", {"price_dollars": "+0.45"}),
        ("delta", {"price_dollars": " 0.45"}),
        ("delta", {"price_dollars": "0.45\n"}),
        ("delta", {"price_dollars": "1_000.5"}),
        ("delta", {"price_dollars": "0.0000001"}),
        ("delta", {"price_dollars": "0.0000000"}),
        ("delta", {"price_dollars": "0.000001"}),
        ("delta", {"delta_fp": "-0"}),
        ("delta", {"delta_fp": "-0.00"}),
        ("delta", {"delta_fp": "123456789012345678.5"}),
        ("delta", {"delta_fp": "NaN"}),
        ("delta", {"delta_fp": "abc"}),
        ("delta", {"side": "maybe"}),
        ("delta", {"ts_ms": None, "ts": "2026-01-01T00:00:00.250Z"}),
        ("delta", {"ts_ms": None, "ts": "not a time"}),
        ("delta", {"ts_ms": None}),
        ("delta", {"ts_ms": "1767225600001"}),  # lax: an integer as a string
        ("delta", {"ts_ms": 2**70}),  # decodes, cannot be encoded
        ("delta", {"market_id": 5}),
        ("delta", {"extra": [1, {"a": 2}]}),
        ("ticker", {}),
        ("ticker", {"volume_fp": 10}),
        ("ticker", {"yes_bid_dollars": None, "yes_ask_size_fp": "7.50"}),
        ("ticker", {"open_interest_fp": "1.5e3"}),
        ("ticker", {"ts_ms": None}),
        ("ticker", {"ts_ms": None, "ts": None}),
        ("ticker", {"dollar_volume": "12"}),
        ("trade", {}),
        ("trade", {"taker_outcome_side": "no", "taker_book_side": "ask", "is_block_trade": True, "ts_ms": 5}),
        ("trade", {"count_fp": "03.00"}),
        ("trade", {"trade_id": None}),
    ],
)
def test_hand_picked_bodies(kind: str, changes: dict[str, Any]) -> None:
    msg = {**{"delta": DELTA, "ticker": TICKER, "trade": TRADE}[kind], **changes}
    assert_same(_frame(kind, _payload(kind, msg)))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sid":3,"msg":{"market_ticker":"KX-A","price_dollars":"0.45","delta_fp":"1.00","side":"no"}}',  # no type
        b'{"type":5,"msg":{"market_ticker":"KX-A","price_dollars":"0.45","delta_fp":"1.00","side":"no"}}',
        b'{"type":"orderbook_delta"}',
        b'{"type":"orderbook_delta","msg":null}',
        b'{"type":"orderbook_delta","msg":{"market_ticker":"KX-A"}}',
        b"not json",
        b'{"type":"orderbook_delta","msg":{"market_ticker":"KX-A","price_dollars":"0.45","delta_fp":"1.00",'
        b'"side":"no","price_dollars":"0.4"}}',  # a repeated field
    ],
)
def test_envelopes(payload: bytes) -> None:
    assert_same(_frame("delta", payload))


def test_other_verdicts_and_kinds_take_the_normaliser() -> None:
    frame = _frame("delta", _payload("delta", DELTA))
    for verdict in (Verdict.WON, Verdict.REEMIT, Verdict.ALIAS):
        assert_same(frame, verdict)
    snapshot = _frame("snapshot", b'{"type":"orderbook_snapshot","sid":3,"msg":{"market_ticker":"KX-A"}}')
    assert event_bytes(snapshot, 1, 2) is None
    assert_same(snapshot)


_digits = st.text("0123456789", min_size=1, max_size=4)
_decimal_text = st.one_of(
    st.sampled_from(["0.45", "0.4500", "10.00", "-8.00", "0", "-0", "1", "0.000001", "0.0000001", "1e2", "00.5"]),
    st.builds(lambda s, i, f: f"{s}{i}.{f}", st.sampled_from(["", "-", "+"]), _digits, _digits),
    st.builds(lambda s, i: f"{s}{i}", st.sampled_from(["", "-"]), _digits),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
)
_decimal_value = st.one_of(_decimal_text, _decimal_text, st.integers(-5, 5), st.floats(-5, 5), st.none())
_body = st.fixed_dictionaries(
    {},
    optional={
        "market_ticker": st.sampled_from(["KX-A", "KX-B"]),
        "market_id": st.sampled_from(["", "m-1"]),
        "price_dollars": _decimal_value,
        "delta_fp": _decimal_value,
        "side": st.sampled_from(["yes", "no", "x"]),
        "yes_bid_dollars": _decimal_value,
        "volume_fp": _decimal_value,
        "yes_price_dollars": _decimal_value,
        "no_price_dollars": _decimal_value,
        "count_fp": _decimal_value,
        "trade_id": st.sampled_from(["t-1", "t-2"]),
        "taker_side": st.sampled_from(["", "yes"]),
        "taker_outcome_side": st.sampled_from(["", "no"]),
        "ts_ms": st.one_of(st.none(), st.integers(0, 2**63), st.just("17")),
        "ts": st.one_of(st.none(), st.integers(0, 2**40), st.just("2026-01-01T00:00:00Z")),
        "dollar_volume": st.one_of(st.none(), st.integers(0, 10**6)),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["delta", "ticker", "trade"]), bodies=st.lists(_body, min_size=1, max_size=4))
def test_generated_bodies(kind: str, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:  # several per example: decimal texts recur (the fast path remembers canonical ones)
        assert_same(_frame(kind, _payload(kind, body)))
