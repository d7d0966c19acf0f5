"""A gatherer's two lifecycle subscriptions: when one ends, it drops its waiting copies only when the other certainly
received every one of them; else they are keyed and sent (a copy dropped that the other never got may be on no
gatherer at all: a loss nothing reports), and the dedup stage joins the copies."""

from __future__ import annotations

import json

from ingest.gatherer import Gatherer
from mdpipe.config import GatherConfig, VenueConfig
from schemas.raw import decode_raw
from tests.venues.kalshi.dedup_events import dedup_events
from venues.kalshi.protocol import KalshiSession

MS = 1_000_000


class _Recorder:
    """RawProducer's holding interface: keeps every frame the gatherer hands over."""

    def __init__(self) -> None:
        self.held: list[tuple[str, bytes | None, bytes]] = []
        self.values: list[bytes] = []

    def release(self) -> int:
        n = len(self.held)
        self.values += [v for _, _, v in self.held]
        self.held.clear()
        return n

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.values.append(value)


def _two_sessions(gid: str = "g1") -> tuple[_Recorder, KalshiSession, KalshiSession]:
    producer = _Recorder()
    gather = GatherConfig(channels=["market_lifecycle_v2"])
    venue = VenueConfig(rest_url="http://x", ws_url="ws://x")
    g = Gatherer(gather, venue, producer, gatherer_id=gid, raw_topic=f"raw.{gid}", dlq_topic="dlq", markets_topic="m")
    sessions = [g._connection(i).session for i in (0, 1)]
    for i, s in enumerate(sessions):
        assert isinstance(s, KalshiSession) and s.lifecycle
        s.connected(MS)
        (cmd,) = [json.loads(c) for c in s.data_to_send()]
        reply = {"type": "subscribed", "id": cmd["id"], "msg": {"channel": "market_lifecycle_v2", "sid": 1}}
        s.receive(json.dumps(reply).encode(), (10 + 10 * i) * MS)
    return producer, sessions[0], sessions[1]  # type: ignore[return-value]


def _lc(seq: int, body: dict) -> bytes:
    typ = "event_lifecycle" if "event_ticker" in body and "market_ticker" not in body else "market_lifecycle_v2"
    return json.dumps({"type": typ, "sid": 1, "seq": seq, "msg": body}).encode()


def _sent(producer: _Recorder, conn: int) -> list[dict]:
    frames = [decode_raw(v) for v in producer.values]
    return [json.loads(f.payload)["msg"] for f in frames if f.conn == conn and f.kind == "lifecycle"]


META = {"market_ticker": "KX-M16", "yes_sub_title": "Above 45", "strike_type": "greater", "floor_strike": 45}
DEACT = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
ACT = {"market_ticker": "KX-A", "event_type": "activated", "is_deactivated": False}
EVENT = {"event_ticker": "KXEV-1", "title": "t", "series_ticker": "KX"}


def test_a_copy_the_other_subscription_never_got_is_sent_when_its_connection_closes() -> None:
    # the other subscription was confirmed (20 ms) before this one received the message (30 ms), but its subscribe
    # took effect at the venue after the message left: it never gets it. No anchor has come yet.
    producer, s0, s1 = _two_sessions()
    s0.receive(_lc(1, META), 30 * MS)
    s1.receive(_lc(1, DEACT), 40 * MS)
    s0.receive(_lc(2, DEACT), 41 * MS)
    s0.disconnected(50 * MS)  # the venue closed connection 0
    assert META in _sent(producer, 0)  # keyed at the end of its stream and sent: no other copy exists
    s1.flush(60 * MS)
    assert DEACT in _sent(producer, 1)


def _anchored_then(s1_loses: int | None) -> tuple[_Recorder, KalshiSession, int]:
    """An anchor both subscriptions received, then three messages on s0 (s1 numbers the stream its own way, and
    loses seq ``s1_loses``); s0's connection then closes. Returns s1 and how many copies s0 had sent before."""
    producer, s0, s1 = _two_sessions()
    s0.receive(_lc(1, EVENT), 30 * MS)  # the anchor lines the two up
    s1.receive(_lc(4, EVENT), 31 * MS)  # (s1 subscribed three messages earlier)
    for seq, body, at in ((2, DEACT, 32), (3, ACT, 33), (4, META, 34)):
        s0.receive(_lc(seq, body), at * MS)
        if seq + 3 != s1_loses:
            s1.receive(_lc(seq + 3, body), (at + 1) * MS)
    before = len(_sent(producer, 0))
    s0.disconnected(50 * MS)
    return producer, s1, before


def test_copies_the_other_subscription_holds_at_the_same_positions_are_dropped() -> None:
    producer, s1, before = _anchored_then(s1_loses=None)
    assert _sent(producer, 0)[before:] == []  # s1 has every one of them
    s1.flush(60 * MS)
    assert [b for b in _sent(producer, 1) if b != EVENT] == [DEACT, ACT, META]


def test_one_copy_the_other_subscription_lost_and_every_copy_is_sent() -> None:
    # s1 lost the activated one (a gap): s0 sends all three, not only that one (all or none: module docstring of
    # venues.kalshi.anchors)
    producer, _, before = _anchored_then(s1_loses=6)
    assert _sent(producer, 0)[before:] == [DEACT, ACT, META]


def test_equal_bodies_one_dropped_one_sent_would_merge_so_both_are_sent() -> None:
    # the stream: anchors K, N1, N2, N3, then two equal bodies X, X' 50 ms apart, then anchor M. s0 ends after X';
    # s1 lost N1..N3 and X'. Dropping X alone (s1 has it) and sending X' let s1's X join X''s event by weak key (their
    # keys share no anchor), and another gatherer's copies of X then met that event by key: one row for two.
    def ev(n: str) -> dict:
        return {"event_ticker": f"KXEV-{n}", "title": "t", "series_ticker": "KX"}

    stream = [ev("K"), ev("N1"), ev("N2"), ev("N3"), DEACT, DEACT, ev("M")]
    at_ms = [1000, 2000, 3000, 4000, 5000, 5050, 5500]
    p1, a, b = _two_sessions("g1")
    p2, c, d = _two_sessions("g2")
    for pos, body in enumerate(stream, 1):
        t = at_ms[pos - 1] * MS
        if pos <= 6:
            a.receive(_lc(pos, body), t)
        if pos not in (2, 3, 4, 6):
            b.receive(_lc(pos, body), t + MS)
        c.receive(_lc(pos, body), t)
        d.receive(_lc(pos, body), t + MS)
        if pos == 6:
            a.disconnected(5100 * MS)
    for s in (b, c, d):
        s.release_held(10_000 * MS)
        s.flush(10_000 * MS)
    g1 = [decode_raw(v) for v in p1.values]
    g2 = [decode_raw(v) for v in p2.values]
    assert dedup_events(g1 + g2, "KX-A") == 2
    assert dedup_events(g2 + g1, "KX-A") == 2
