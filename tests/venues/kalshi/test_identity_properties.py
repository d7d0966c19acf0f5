"""Property tests of event identity over generated venue streams and gatherer interleavings.

Each test generates what the venue publishes and, per gatherer, what reached it: when it subscribed, when its
connection dropped and came back (a new sid, seq from 1), which messages it lost (seq consumed), which the venue
re-delivered. The gatherers' real KalshiSession (lifecycle) or EventKeyer (deltas) key what they received; the
frames are mapped back to the venue message they copy (receive time = venue index). The properties are the claims
of venues.kalshi.keys / venues.kalshi.anchors:

- every copy a gatherer received under the conditions the docstrings name gets the reference key of its message;
- two distinct venue messages never share a reference key, and no copy carries another message's reference key
  (a copy that could not be keyed with certainty gets a key nobody else uses: a possible duplicate, never a merge);
- a re-delivered seq yields no second frame.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.raw import decode_raw
from sink.book import Book, DeltaRow, SnapshotRow, book_at, contains
from venues.kalshi.anchors import AnchorChain
from venues.kalshi.keys import EventKeyer, digest
from venues.kalshi.protocol import KalshiSession
from venues.kalshi.snapshots import SnapshotPlacer

SPAN = 1000  # AnchorChain's default: longer than any generated stream, so every wait ends at an anchor or the end

# -- lifecycle: identical bodies recur at any spacing ----------------------------------------------------------

BODIES = [
    {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True},
    {"market_ticker": "KX-A", "event_type": "activated", "is_deactivated": False},
    {"market_ticker": "KX-B", "event_type": "deactivated", "is_deactivated": True},
    {"market_ticker": "KX-B", "event_type": "activated", "is_deactivated": False},
    {"market_ticker": "KX-A", "event_type": "metadata_updated", "yes_sub_title": "above 5"},
    {"market_ticker": "KX-A", "yes_sub_title": "above 6"},  # the metadata form without event_type
    {"market_ticker": "KX-B", "event_type": "brand_new_type", "x": 1},
]
FEES = [
    {"event_ticker": "KX-E", "fee_type_override": "quadratic", "fee_multiplier_override": 1},
    {"event_ticker": "KX-E", "fee_type_override": None, "fee_multiplier_override": None},
]


@dataclass
class VenueMsg:
    index: int
    wire_type: str
    body: dict[str, Any]
    anchor: bool

    def market(self) -> str:
        return self.body.get("market_ticker") or self.body["event_ticker"]


@st.composite
def lifecycle_streams(draw: Any) -> list[VenueMsg]:
    n = draw(st.integers(3, 80))
    out: list[VenueMsg] = []
    anchors = 0
    for i in range(n):
        roll = draw(st.integers(0, 9))
        if roll < 2:  # an anchor: a market created or settled once, or an event created once
            anchors += 1
            kind = draw(st.sampled_from(["created", "settled", "event"]))
            if kind == "event":
                body = {"event_ticker": f"KX-EV{anchors}", "title": "t", "series_ticker": "KX"}
                out.append(VenueMsg(i, "event_lifecycle", body, True))
            else:
                body = {"market_ticker": f"KX-N{anchors}", "event_type": kind}
                out.append(VenueMsg(i, "market_lifecycle_v2", body, True))
        elif roll < 3:
            out.append(VenueMsg(i, "event_fee_update", dict(draw(st.sampled_from(FEES))), False))
        else:
            out.append(VenueMsg(i, "market_lifecycle_v2", dict(draw(st.sampled_from(BODIES))), False))
    return out


@dataclass
class Reception:
    """What reached one gatherer: subscriptions as [start, end) index ranges (a new sid each), lost and re-delivered
    indexes."""

    subs: list[tuple[int, int]]
    lost: set[int] = field(default_factory=set)
    redelivered: set[int] = field(default_factory=set)


@st.composite
def receptions(draw: Any, n: int) -> Reception:
    start = draw(st.integers(0, n))
    subs: list[tuple[int, int]] = []
    at = start
    while at < n:
        end = draw(st.integers(at + 1, n)) if draw(st.booleans()) else n
        subs.append((at, end))
        at = draw(st.integers(end, n)) if end < n else n  # down until `at`, then a new subscription
    lost = set(draw(st.lists(st.integers(0, max(0, n - 1)), max_size=n // 3))) if n else set()
    redelivered = set(draw(st.lists(st.integers(0, max(0, n - 1)), max_size=n // 4))) if n else set()
    return Reception(subs, lost, redelivered)


def reference_keys(stream: list[VenueMsg]) -> dict[int, str | None]:
    """The key every gatherer must derive for each message when it received the messages the rule looks at."""
    keyer = EventKeyer()
    content = [keyer.body_digest(m.market(), json.dumps(m.body).encode()) for m in stream]
    out: dict[int, str | None] = {}
    for m in stream:
        i = m.index
        if m.anchor:
            out[i] = "l:" + content[i]
            continue
        nxt = next((a for a in stream[i + 1 :] if a.anchor), None)
        prev = next((a for a in reversed(stream[:i]) if a.anchor), None)
        if nxt is not None and nxt.index - i <= SPAN:
            out[i] = "l:" + digest(f"{content[i]}>{content[nxt.index]}-{nxt.index - i}".encode())
        elif prev is not None:
            out[i] = "l:" + digest(f"{content[i]}<{content[prev.index]}+{i - prev.index}".encode())
        else:
            out[i] = None  # nothing to anchor to: each copy keys itself
    return out


def gather_lifecycle(gid: str, stream: list[VenueMsg], rec: Reception) -> list[tuple[int, str]]:
    """Feed one gatherer's session what reached it; returns (venue index, key) of every lifecycle frame."""
    return [(i, keys[0]) for i, keys in gather_lifecycle_keys(gid, stream, rec)]


def gather_lifecycle_keys(gid: str, stream: list[VenueMsg], rec: Reception) -> list[tuple[int, list[str]]]:
    """(venue index, [event key, *alternate keys]) of every lifecycle frame."""
    frames: list[tuple[int, list[str]]] = []
    session = KalshiSession(
        gatherer=gid,
        conn_id=0,
        channels=["market_lifecycle_v2"],
        sub_cap=10,
        keyer=EventKeyer(),
        emit=lambda market, value: frames.append(_index_key(value)),
        dead=lambda data, reason: (_ for _ in ()).throw(AssertionError(reason)),
        lifecycle=True,
    )
    for sid, (start, end) in enumerate(rec.subs, 1):
        session.connected(start * 1000)
        cmd = json.loads(session.data_to_send()[-1])
        session.receive(
            json.dumps({"id": cmd["id"], "type": "subscribed", "msg": {"channel": "x", "sid": sid}}).encode(), 1
        )
        for m in stream[start:end]:
            if m.index in rec.lost:
                continue
            wire = json.dumps({"type": m.wire_type, "sid": sid, "seq": m.index - start + 1, "msg": m.body}).encode()
            for _ in range(2 if m.index in rec.redelivered else 1):
                session.receive(wire, m.index * 1000 + 7)
        session.disconnected(end * 1000)
    session.flush(10**15)
    return [f for f in frames if f[0] >= 0]


def _index_key(value: bytes) -> tuple[int, list[str]]:
    frame = decode_raw(value)
    return (frame.recv_ns // 1000 if frame.kind == "lifecycle" else -1), [frame.event_key, *frame.alt_keys]


def certain(i: int, stream: list[VenueMsg], rec: Reception) -> bool:
    """Did this gatherer receive, on the subscription that brought ``i``, the anchor its reference key uses?"""
    sub = next((s for s in rec.subs if s[0] <= i < s[1]), None)
    if sub is None or i in rec.lost:
        return False
    if stream[i].anchor:
        return True
    nxt = next((a for a in stream[i + 1 :] if a.anchor), None)
    if nxt is not None:
        return sub[0] <= nxt.index < sub[1] and nxt.index not in rec.lost
    prev = next((a for a in reversed(stream[:i]) if a.anchor), None)
    return prev is not None and sub[0] <= prev.index and prev.index not in rec.lost


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_lifecycle_identity_over_interleavings(data: Any) -> None:
    stream = data.draw(lifecycle_streams())
    recs = [data.draw(receptions(len(stream))) for _ in range(3)]
    ref = reference_keys(stream)
    known = [k for k in ref.values() if k is not None]
    assert len(known) == len(set(known)), "two distinct venue messages share a reference key"
    owner = {k: i for i, k in ref.items() if k is not None}
    for g, rec in enumerate(recs):
        got_keys = gather_lifecycle_keys(f"g{g}", stream, rec)
        got = [(i, keys[0]) for i, keys in got_keys]
        indexes = [i for i, _ in got]
        assert len(indexes) == len(set(indexes)), "a message (or its re-delivery) produced two frames"
        received = {i for s in rec.subs for i in range(*s)} - rec.lost
        assert set(indexes) == received, "a received lifecycle message was not recorded"
        for i, key in got:
            if certain(i, stream, rec) and ref[i] is not None:
                assert key == ref[i], f"g{g} keyed message {i} differently"
        for i, keys in got_keys:  # alternate keys too (positions against other anchors): never another message's
            for key in keys:
                assert owner.get(key, i) == i, f"g{g}'s copy of message {i} carries message {owner.get(key)}'s key"


# -- deltas: identical bodies inside one venue millisecond ------------------------------------------------------


@st.composite
def delta_stream(draw: Any) -> list[bytes]:
    """Deltas of one market with non-decreasing ts_ms; bodies repeat within a millisecond (twins)."""
    n = draw(st.integers(1, 60))
    ts = 1_000
    out = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 0, 1, 50, 15_000]))
        side = draw(st.sampled_from(["yes", "no"]))
        size = draw(st.sampled_from(["1.00", "-1.00", "5.00"]))
        out.append(
            f'{{"market_ticker":"M","price_dollars":"0.4200","delta_fp":"{size}","side":"{side}","ts_ms":{ts}}}'.encode()
        )
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_delta_identity_over_interleavings(data: Any) -> None:
    stream = data.draw(delta_stream())
    reference = EventKeyer()
    ref = [reference.delta_body(b)[1] for b in stream]
    assert len(ref) == len(set(ref)), "two distinct deltas share a reference key"
    for _ in range(3):
        start = data.draw(st.integers(0, len(stream)))
        lost = set(data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) // 3)))
        keyer = EventKeyer()
        for i, body in enumerate(stream):
            if i < start or i in lost:
                continue
            key = keyer.delta_body(body)[1]
            twins_before = [j for j in range(i) if stream[j] == body]
            if all(start <= j and j not in lost for j in twins_before):
                assert key == ref[i]
            else:  # it missed an earlier identical twin: it may take that twin's key (the documented merge case)
                assert key in {ref[j] for j in [*twins_before, i]}


# -- snapshots: their position contains exactly the deltas sent before them -----------------------------------


@st.composite
def book_run(draw: Any) -> tuple[list[tuple[int, str, int]], int, list[tuple[int, str]]]:
    """Deltas of market M as (ts_ms, side, size in cents), the index at which a gatherer's subscription snapshot was
    taken, and other markets' messages on the same connection as (ts_ms, market)."""
    n = draw(st.integers(0, 40))
    ts = 10_000
    deltas = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 0, 1, 2, 700, 3_000]))
        deltas.append((ts, draw(st.sampled_from(["yes", "no"])), draw(st.sampled_from([100, 200, 300]))))
    cut = draw(st.integers(0, n))
    others = sorted((draw(st.integers(10_000, ts + 5_000)), f"O{k}") for k in range(draw(st.integers(0, 10))))
    return deltas, cut, others


@settings(max_examples=400, deadline=None)
@given(book_run(), st.sampled_from([5, 500, 1_000, 5_000]))  # holds longer than the model's 1 ms latency
def test_snapshot_position_contains_exactly_the_deltas_before_it(run: Any, hold_ms: int) -> None:
    deltas, cut, others = run
    keyer = EventKeyer()
    keyed = [(ts, side, size, keyer.delta_body(_delta(ts, side, size))[1]) for ts, side, size in deltas]
    placed: list[tuple[int, list[str]]] = []
    placer = SnapshotPlacer(lambda p, b, after: placed.append((b, list(after))), hold_ns=hold_ms * 1_000_000)
    # the connection's messages after the snapshot in venue order: M's deltas from `cut` on and the other markets'
    # messages not older than the snapshot; each arrives 1 ms after its venue time
    snap_ms = keyed[cut - 1][0] if cut else 10_000
    later = sorted([(ts, 0, key) for ts, _, _, key in keyed[cut:]] + [(ts, 1, m) for ts, m in others if ts >= snap_ms])
    placer.snapshot(1, "M", (snap_ms + 1) * 1_000_000, None)
    for ts, is_other, what in later:
        now = (ts + 1) * 1_000_000
        placer.expire(now)
        if not placer.pending:
            break
        if is_other:
            placer.clock(ts)
        else:
            placer.delta(1, "M", ts, what)
            placer.clock(ts)
    placer.close(10**15)
    assert len(placed) == 1
    b, after = placed[0]
    snapshot = SnapshotRow(b, "s", [], [], frozenset(after))
    rows = [DeltaRow(ts, key, side, Decimal("0.42"), Decimal(size) / 100) for ts, side, size, key in keyed]
    assert [contains(snapshot, r) for r in rows] == [i < cut for i in range(len(rows))]
    truth = Book()
    for r in rows[:cut]:
        truth_apply(truth, r)
    start = SnapshotRow(b, "s", sorted(truth.yes.items()), sorted(truth.no.items()), frozenset(after))
    for at in {b, *(r.ts_ms for r in rows), b + 10**6}:
        if at < b:
            continue
        want = Book()
        for r in rows:
            if r.ts_ms <= at:
                truth_apply(want, r)
        assert book_at([start], rows, at).normalised() == want.normalised()  # type: ignore[union-attr]


def truth_apply(book: Book, r: DeltaRow) -> None:
    from sink.book import apply

    apply(book, r)


def _delta(ts: int, side: str, size: int) -> bytes:
    return (
        f'{{"market_ticker":"M","price_dollars":"0.4200","delta_fp":"{size / 100:.2f}","side":"{side}","ts_ms":{ts}}}'
    ).encode()


def test_reference_model_sanity() -> None:
    """The generators produce the situations the properties are about (identical bodies, anchors, late subscribers)."""
    created = {"market_ticker": "KX-N1", "event_type": "created"}
    stream = [
        VenueMsg(0, "market_lifecycle_v2", BODIES[0], False),
        VenueMsg(1, "market_lifecycle_v2", BODIES[1], False),
        VenueMsg(2, "market_lifecycle_v2", created, True),
        VenueMsg(3, "market_lifecycle_v2", BODIES[0], False),
    ]
    ref = reference_keys(stream)
    assert len(set(ref.values())) == 4
    got = dict(gather_lifecycle("g1", stream, Reception([(0, 4)])))
    late = dict(gather_lifecycle("g2", stream, Reception([(1, 4)])))
    assert got[1] == late[1] == ref[1] and got[0] == ref[0]
    by_chain = defaultdict(list)
    for i, k in got.items():
        by_chain[k].append(i)
    assert all(len(v) == 1 for v in by_chain.values())
    assert AnchorChain().max_span == SPAN
