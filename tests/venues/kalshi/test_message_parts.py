"""The session's C path (venues.kalshi.keys.MESSAGE_PARTS: envelope and body of a delta or ticker in one call)
against its msgspec path: a session must emit the same frames, dead letters, gap reports and counters whichever
path read a message.

Each stream is fed to two sessions, one with the C path and one with it switched off (the code before it), and
everything they produced is compared. Streams: the emulator's own (deltas, tickers, trades, lifecycle messages),
with repeated and skipped seqs; hand-picked envelope shapes the C path must hand back (another field order, ``id``,
``sid`` null, a float seq, extra fields, arrays, bad JSON); and generated envelopes around the venue's shape.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gatherer.hot_path import messages
from venues.kalshi import keys, protocol
from venues.kalshi.keys import EventKeyer
from venues.kalshi.protocol import KalshiSession

pytestmark = pytest.mark.skipif(not keys.ACCELERATED, reason="venues.kalshi._deltakey was not built (no C compiler)")

CHANNELS = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]
DELTA = '{"market_ticker":"KX-A","price_dollars":"0.4500","delta_fp":"8.00","side":"yes","ts_ms":1767225600000}'
TICKER = (
    '{"market_ticker":"KX-A","price_dollars":"0.45","yes_bid_dollars":"0.44","yes_ask_dollars":"0.46",'
    '"volume_fp":"10.00","dollar_volume":4,"ts":1767225600,"ts_ms":1767225600003}'
)


def _run(stream: list[bytes], fast: bool) -> dict[str, Any]:
    """Feed ``stream`` to a fresh session; everything it produced."""
    frames: list[tuple[str, bytes]] = []
    dead: list[tuple[bytes, str]] = []
    session = KalshiSession(
        gatherer="g1",
        conn_id=0,
        channels=CHANNELS,
        sub_cap=100,
        keyer=EventKeyer(),
        emit=lambda market, value: frames.append((market, value)),
        dead=lambda data, reason: dead.append((data, reason)),
    )
    saved = protocol._message_parts
    if not fast:
        protocol._message_parts = None
    try:
        for i, data in enumerate(stream):
            session.receive(data, 1_000 + i)
        session.flush(10**18)
    finally:
        protocol._message_parts = saved
    stats = session.stats
    return {
        "frames": frames,
        "dead": dead,
        "by_kind": dict(stats.by_kind),
        "counters": (stats.gaps, stats.duplicates, stats.dead, stats.errors),
        "last": (session.first_data_ns, session.last_data_ns, session.data_messages, session.last_rx_ns),
    }


def _same(stream: list[bytes]) -> dict[str, Any]:
    fast = _run(stream, fast=True)
    assert fast == _run(stream, fast=False)
    return fast


def test_the_emulators_deltas_and_tickers_take_the_c_path() -> None:
    stream = messages(4000)
    kinds = {m: json.loads(m)["type"] for m in stream}
    handled = [m for m in stream if keys.MESSAGE_PARTS(m) is not None]
    assert {kinds[m] for m in handled} == {"orderbook_delta", "ticker"}
    assert len(handled) == sum(1 for m in stream if kinds[m] in ("orderbook_delta", "ticker"))
    for message in handled[:50]:
        kind, sid, seq, market, digest, ms = keys.MESSAGE_PARTS(message)
        envelope = json.loads(message)
        body = json.dumps(envelope["msg"], separators=(",", ":")).encode()
        parts = keys._delta_parts(body) if kind == "delta" else keys._ticker_parts(body)
        assert (market, digest, ms) == parts
        assert kind == {"orderbook_delta": "delta", "ticker": "ticker"}[envelope["type"]]
        assert (sid, seq) == (envelope["sid"], envelope.get("seq"))


def test_the_emulators_stream_gets_the_same_frames_with_repeats_and_gaps() -> None:
    stream = messages(6000)
    stream = stream[:1000] + stream[900:1000] + stream[1200:]  # seqs repeated, then skipped
    out = _same(stream)
    assert out["counters"][0] > 0 and out["counters"][1] > 0  # gaps and duplicates were seen
    assert out["by_kind"]["delta"] > 0 and out["by_kind"]["ticker"] > 0


@pytest.mark.parametrize(
    "message",
    [
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA}}}',  # handled
        f' {{ "type" : "orderbook_delta" , "sid" : 1 , "seq" : 1 , "msg" : {DELTA} }}\n',  # handled
        f'{{"type":"ticker","sid":2,"msg":{TICKER}}}',  # handled
        f'{{"type":"ticker","sid":2,"seq":7,"msg":{TICKER}}}',  # handled
        f'{{"sid":1,"type":"orderbook_delta","seq":1,"msg":{DELTA}}}',  # type not first
        f'{{"type":"orderbook_delta","msg":{DELTA},"sid":1,"seq":1}}',  # msg before sid: handled
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"id":4,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":null,"seq":1,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","seq":1,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":1.0,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":"1","msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":-1,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":12345678901234567890,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"sid":2,"seq":1,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","type":"ticker","sid":1,"seq":1,"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA},"msg":{DELTA}}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA},"x":1}}',
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA}}} x',
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA}',
        f'{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{TICKER}}}',  # a ticker body under a delta type
        f'{{"type":"ticker","sid":1,"seq":1,"msg":{DELTA}}}',
        f'{{"type":"orderbook\\u005fdelta","sid":1,"seq":1,"msg":{DELTA}}}',
        f'[{{"type":"orderbook_delta","sid":1,"seq":1,"msg":{DELTA}}},{{"type":"ticker","sid":2,"msg":{TICKER}}}]',
        '{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"KX-A","price_dollars":0.5,'
        '"delta_fp":"1","side":"yes","ts_ms":1}}',  # a JSON number: the Decimal path
        '{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"KX-A","price_dollars":"1.5",'
        '"delta_fp":"1","side":"yes","ts_ms":1}}',  # out of range: a dead letter either way
        '{"type":"orderbook_delta","sid":1,"seq":1,"msg":null}',
        '{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"t1","market_ticker":"KX-A","yes_price_dollars":"0.5",'
        '"no_price_dollars":"0.5","count_fp":"1","taker_side":"yes","ts":1767225600}}',
        '{"type":"subscribed","id":1,"msg":{"channel":"orderbook_delta","sid":1}}',
        "not json",
    ],
)
def test_envelope_shapes(message: str) -> None:
    data = message.encode()
    # a repeat and a gap after it: the seq check sees what each path read
    stream = [data, data, data.replace(b'"seq":1,', b'"seq":3,')]
    _same(stream)


_INT = st.one_of(st.integers(0, 50), st.integers(-(10**20), 10**20), st.none(), st.floats(allow_nan=False))


@st.composite
def _envelopes(draw: st.DrawFn) -> bytes:
    fields: list[tuple[str, Any]] = [
        ("type", draw(st.sampled_from(["orderbook_delta", "ticker", "trade", "error", ""]))),
        ("sid", draw(st.sampled_from([1, 2]) | _INT)),
    ]
    if draw(st.booleans()):
        fields.append(("seq", draw(st.integers(1, 6) | _INT)))
    body = json.loads(draw(st.sampled_from([DELTA, TICKER])))
    for name in list(body):
        if draw(st.integers(0, 9)) == 0:
            body[name] = draw(_INT | st.text(max_size=4))
    fields.append(("msg", body))
    for name in ("id", "extra"):
        if draw(st.integers(0, 7)) == 0:
            fields.append((name, draw(_INT)))
    if draw(st.integers(0, 4)) == 0:
        fields = draw(st.permutations(fields))
    sep = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = "{" + sep[0].join(f"{json.dumps(k)}{sep[1]}{json.dumps(v, separators=sep)}" for k, v in fields) + "}"
    if draw(st.integers(0, 19)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_envelopes(), min_size=1, max_size=12))
def test_generated_envelopes_get_the_same_outcome(stream: list[bytes]) -> None:
    _same(stream)
