"""A gatherer's two lifecycle subscriptions: when one ends, it drops only the waiting copies the other certainly
received; a copy the other never got is keyed and sent (else no gatherer may have it: a loss nothing reports)."""

from __future__ import annotations

import json

from ingest.gatherer import Gatherer
from mdpipe.config import GatherConfig, VenueConfig
from schemas.raw import decode_raw
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


def _two_sessions() -> tuple[_Recorder, KalshiSession, KalshiSession]:
    producer = _Recorder()
    gather = GatherConfig(channels=["market_lifecycle_v2"])
    venue = VenueConfig(rest_url="http://x", ws_url="ws://x")
    g = Gatherer(gather, venue, producer, gatherer_id="g1", raw_topic="raw.g1", dlq_topic="dlq", markets_topic="m")
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


def test_only_the_copies_the_other_subscription_holds_at_the_same_position_are_dropped() -> None:
    producer, s0, s1 = _two_sessions()
    s0.receive(_lc(1, EVENT), 30 * MS)  # an anchor both received: the positions of the two line up from it
    s1.receive(_lc(4, EVENT), 31 * MS)  # (numbered its own way: subscribed three messages earlier)
    for seq, body, at in ((2, DEACT, 32), (3, ACT, 33), (4, META, 34)):
        s0.receive(_lc(seq, body), at * MS)
    s1.receive(_lc(5, DEACT), 35 * MS)
    s1.receive(_lc(7, META), 36 * MS)  # lost seq 6 (the activated one): a gap
    sent_before = len(_sent(producer, 0))
    s0.disconnected(50 * MS)
    assert _sent(producer, 0)[sent_before:] == [ACT]  # the deactivated and metadata copies are s1's to send
