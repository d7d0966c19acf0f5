"""The gatherer's protocol session against behaviours of the real venue the emulator did not show before (sans-I/O).

Each test feeds a KalshiSession the venue's messages exactly as the wire carries them and checks what it records.
(The same behaviours through the real emulator, gatherer and broker: test_venue_behaviours_live.py here.)
"""

from __future__ import annotations

import json
from typing import Any

from schemas.raw import RawFrame, decode_raw
from venues.kalshi.keys import EventKeyer
from venues.kalshi.protocol import KalshiSession

S = 1_000_000_000
LC = "market_lifecycle_v2"


class Client:
    """One gatherer connection's session with the venue's replies scripted by the test."""

    def __init__(self, channels: list[str], markets: list[str] | None = None, lifecycle: bool = False) -> None:
        self.frames: list[RawFrame] = []
        self.dead: list[tuple[bytes, str]] = []
        self.session = KalshiSession(
            gatherer="g1",
            conn_id=0,
            channels=channels,
            sub_cap=100,
            keyer=EventKeyer(),
            emit=lambda market, value: self.frames.append(decode_raw(value)),
            dead=lambda data, reason: self.dead.append((data, reason)),
            lifecycle=lifecycle,
        )
        if markets:
            self.session.add_markets(markets)
        self.session.connected()
        self.sids: dict[str, int] = {}

    def ack(self, first_sid: int) -> None:
        """Answer every subscribe command sent so far with `subscribed`, sids from ``first_sid``."""
        sid = first_sid
        for raw in self.session.data_to_send():
            cmd = json.loads(raw)
            if cmd["cmd"] != "subscribe":
                continue
            for channel in cmd["params"]["channels"]:
                self.sids[channel] = sid
                self.send({"id": cmd["id"], "type": "subscribed", "msg": {"channel": channel, "sid": sid}}, 1)
                sid += 1

    def send(self, msg: dict[str, Any], recv_ns: int) -> None:
        self.session.receive(json.dumps(msg).encode(), recv_ns)

    def data(self, kind: str, seq: int | None, body: dict[str, Any], recv_ns: int, sid: int | None = None) -> None:
        channel = {"orderbook_delta": "orderbook_delta", "orderbook_snapshot": "orderbook_delta"}.get(kind, kind)
        if kind in (LC, "event_lifecycle", "event_fee_update"):
            channel = LC
        msg: dict[str, Any] = {"type": kind, "sid": sid if sid is not None else self.sids[channel], "msg": body}
        if seq is not None:
            msg["seq"] = seq
        self.send(msg, recv_ns)

    def settle(self) -> None:
        tick = getattr(self.session, "tick", None)
        if tick is not None:
            tick(10**18)

    def keys(self, kind: str) -> list[str]:
        return [f.event_key for f in self.frames if f.kind == kind]

    def gaps(self) -> list[dict[str, Any]]:
        return [json.loads(f.payload) for f in self.frames if f.kind == "gap"]


DEACT = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
ACT = {"market_ticker": "KX-A", "event_type": "activated", "is_deactivated": False}


def created(n: int) -> dict[str, Any]:
    return {"market_ticker": f"KX-N{n}", "event_type": "created", "open_ts": 1000 + n, "close_ts": 9000 + n}


def test_identical_lifecycle_bodies_minutes_apart_are_two_events_on_every_gatherer() -> None:
    """A market paused, resumed and paused again ten minutes later: the two `deactivated` bodies are identical.
    Both are distinct events, and a gatherer that subscribed after the first cycle keys the second alike."""
    stream = [(DEACT, 0), (ACT, 20 * S), (created(1), 30 * S), (DEACT, 600 * S), (ACT, 601 * S), (created(2), 602 * S)]
    early, late = Client([LC], lifecycle=True), Client([LC], lifecycle=True)
    early.ack(1)
    late.ack(7)
    for seq, (body, t) in enumerate(stream, 1):
        early.data(LC, seq, body, t)
        if seq >= 4:
            late.data(LC, seq - 3, body, t + 3_000_000)  # subscribed later: its seq starts at 1 there
    early.settle()
    late.settle()
    keys = early.keys("lifecycle")
    assert len(keys) == 6 and len(set(keys)) == 6, "identical bodies minutes apart merged into one event"
    # by position on the stream (the late subscriber's seq 1 is the early one's 4), not by frame order: copies keyed
    # forward are held for their trail, anchors are not
    by_seq = {f.seq: f.event_key for f in early.frames if f.kind == "lifecycle"}
    late_by_seq = {f.seq: f.event_key for f in late.frames if f.kind == "lifecycle"}
    assert late_by_seq == {seq - 3: key for seq, key in by_seq.items() if seq >= 4}, (
        "a later subscriber keyed the same events differently"
    )


def test_a_redelivered_seq_does_not_shift_the_numbering_of_identical_deltas() -> None:
    """Two identical deltas of one millisecond; one gatherer's venue connection re-sends the first (same seq). Both
    gatherers must key the two events alike (the counter used to move before the duplicate-seq check)."""
    body = {"market_ticker": "KX-A", "price_dollars": "0.4200", "delta_fp": "1.00", "side": "yes", "ts_ms": 5}
    snap = {"market_ticker": "KX-A", "yes_dollars_fp": [["0.4200", "10.00"]]}
    a, b = Client(["orderbook_delta"], ["KX-A"]), Client(["orderbook_delta"], ["KX-A"])
    for c in (a, b):
        c.ack(1)
        c.data("orderbook_snapshot", 1, snap, 1)
        c.data("orderbook_delta", 2, body, 2)
    b.data("orderbook_delta", 2, body, 3)  # the venue re-delivers seq 2
    for c in (a, b):
        c.data("orderbook_delta", 3, body, 4)
        c.settle()
    assert a.keys("delta") == b.keys("delta") and len(set(a.keys("delta"))) == 2


def test_a_snapshot_row_gets_a_venue_position_not_a_receive_time() -> None:
    """The snapshot carries no time; the gatherer places it in the delta stream by the deltas that follow it."""
    c = Client(["orderbook_delta"], ["KX-A"])
    c.ack(1)
    c.data("orderbook_snapshot", 1, {"market_ticker": "KX-A", "yes_dollars_fp": [["0.4200", "10.00"]]}, 5 * S)
    after = {"market_ticker": "KX-A", "price_dollars": "0.4200", "delta_fp": "1.00", "side": "yes", "ts_ms": 4_321}
    c.data("orderbook_delta", 2, after, 5 * S + 1000)
    c.settle()
    (snap,) = [f for f in c.frames if f.kind == "snapshot"]
    assert getattr(snap, "venue_ms", None) == 4_321
    assert getattr(snap, "after_keys", None) == c.keys("delta")


def test_an_out_of_range_number_is_a_dead_letter_and_the_connection_carries_on() -> None:
    c = Client(["orderbook_delta"], ["KX-A"])
    c.ack(1)
    c.data("orderbook_snapshot", 1, {"market_ticker": "KX-A"}, 1)
    bad = {"market_ticker": "KX-A", "price_dollars": "1E+1000000", "delta_fp": "1.00", "side": "yes", "ts_ms": 5}
    c.data("orderbook_delta", 2, bad, 2)  # used to raise out of receive() and drop the connection
    good = {"market_ticker": "KX-A", "price_dollars": "0.4200", "delta_fp": "1.00", "side": "yes", "ts_ms": 6}
    c.data("orderbook_delta", 3, good, 3)
    c.settle()
    assert len(c.dead) == 1 and "price_dollars" in c.dead[0][1]
    assert len(c.keys("delta")) == 1 and not c.gaps()  # the bad message arrived: its seq is no gap


def test_a_new_sid_whose_first_message_is_not_seq_1_is_a_reported_gap() -> None:
    c = Client(["orderbook_delta"], ["KX-A"])
    c.ack(1)
    c.data("orderbook_snapshot", 3, {"market_ticker": "KX-A"}, 7 * S)  # seqs 1 and 2 never arrived
    gaps = c.gaps()
    assert len(gaps) == 1 and gaps[0]["expected"] == 1 and gaps[0]["received"] == 3


def test_a_rejected_message_does_not_hide_a_gap_before_it() -> None:
    c = Client(["orderbook_delta"], ["KX-A"])
    c.ack(1)
    c.data("orderbook_snapshot", 1, {"market_ticker": "KX-A"}, 1)
    c.data("orderbook_delta", 5, {"market_ticker": "KX-A", "side": "sideways"}, 2)  # malformed, after a skip
    gaps = c.gaps()
    assert len(c.dead) == 1
    assert len(gaps) == 1 and gaps[0]["expected"] == 2 and gaps[0]["received"] == 5


def test_the_window_a_connection_was_down_is_a_reported_gap() -> None:
    c = Client(["orderbook_delta"], ["KX-A", "KX-B"])
    c.ack(1)
    c.data("orderbook_snapshot", 1, {"market_ticker": "KX-A"}, 10 * S)
    c.session.disconnected()
    c.session.connected()
    c.ack(10)
    c.data("orderbook_snapshot", 1, {"market_ticker": "KX-A"}, 20 * S)
    down = [g for g in c.gaps() if g.get("kind") == "down"]
    assert len(down) == 1, "a reconnect window was only a reconnect count"
    assert set(down[0]["markets"]) == {"KX-A", "KX-B"} and down[0]["from_ns"] == 10 * S


def test_a_lifecycle_message_with_a_bad_field_still_tells_the_registry() -> None:
    """A `settled` whose settlement value is not a sane number is a dead letter, yet the gatherer must still learn
    that the market settled (and a `created` with a bad field that the market exists)."""
    seen: list[tuple[str, str]] = []
    c = Client([LC], lifecycle=True)
    c.session._on_lifecycle = lambda market, lc, ns: seen.append((market, lc.event_type))
    c.ack(1)
    c.data(LC, 1, {"market_ticker": "KX-A", "event_type": "settled", "settlement_value": "1E+1000000"}, 1)
    c.data(LC, 2, {"market_ticker": "KX-B", "event_type": "created", "open_ts": "not a time"}, 2)
    assert len(c.dead) == 2
    assert seen == [("KX-A", "settled"), ("KX-B", "created")]
