"""The venue's record as the protocol session writes it (no sockets): every change of what a sid delivers with its
exact event position, suppressions, snapshots; and the new wire behaviours (event-level messages on the lifecycle
sids, re-delivered seqs).

The central check is the one verify makes: from the records alone (Subscribed/Unsubscribed positions and
Suppressed ids) and the generated events, predict exactly which messages each sid received, in order."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from venue_sim.book import Books
from venue_sim.lifecycle import Behaviours
from venue_sim.load import Event, Generator
from venue_sim.markets import MarketTable
from venue_sim.record import ALL_MARKETS, Record, SnapshotSent, Subscribed, Suppressed, Unsubscribed
from venue_sim.recorder import Recorder
from venues.kalshi.emulator.protocol import ServerSession
from venues.kalshi.emulator_wire import CH_TICKER, CHANNELS, TYPES

T = [f"KXSIM-E0-M{i}" for i in range(10)]


class ListSink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)


def _session(**behaviours: Any) -> tuple[ServerSession, Generator, ListSink]:
    table = MarketTable(20, 5, 1_700_000_000_000)
    books = Books(5)
    gen = Generator(table, books, seed=5, rate=1000.0, identical_share=0.1, behaviours=Behaviours(**behaviours))
    sink = ListSink()
    rec = Recorder(sink, lambda: gen.next_id - 1, clock_ns=lambda: 42)
    return ServerSession(1, table, books, recorder=rec), gen, sink


def _cmd(s: ServerSession, cid: int, cmd: str, **params: Any) -> list[dict[str, Any]]:
    s.receive_text(json.dumps({"id": cid, "cmd": cmd, "params": params}))
    return [json.loads(t) for t in s.data_to_send()]


def _channel_of(ev: Event) -> str:
    return CHANNELS[min(ev[1], 3)]


def expected_per_sid(records: list[Record], events: list[Event], table: MarketTable) -> dict[int, list[int]]:
    """Event ids each sid of conn 1 must have received, predicted from the record alone (what verify does)."""
    changes: dict[int, list[tuple[int, str, set[str], bool]]] = defaultdict(list)  # sid -> (after_id, ch, mkts, on)
    kept: set[tuple[int, int]] = set()
    for r in records:
        if isinstance(r, Subscribed):
            changes[r.sid].append((r.after_id, r.channel, set(r.markets), True))
        elif isinstance(r, Unsubscribed):
            changes[r.sid].append((r.after_id, r.channel, set(r.markets), False))
        elif isinstance(r, Suppressed):
            kept |= {(r.sid, i) for i in r.ids}
    out: dict[int, list[int]] = {}
    for sid, chs in changes.items():
        got = []
        for ev in events:
            covered: set[str] = set()
            for after_id, _channel, markets, on in chs:
                if after_id >= ev[0]:
                    break
                if on:
                    covered |= markets
                elif ALL_MARKETS in markets:
                    covered = set()
                else:
                    covered -= markets
            if _channel_of(ev) != chs[0][1]:
                continue
            if (ALL_MARKETS in covered or table.ticker(ev[2]) in covered) and (sid, ev[0]) not in kept:
                got.append(ev[0])
        out[sid] = got
    return out


def _received(msgs: list[dict[str, Any]]) -> dict[int, list[tuple[str, str]]]:
    """(type, body) of every data message per sid, in order (identical bodies cannot be told apart)."""
    by_sid: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for m in msgs:
        if m["type"] in TYPES and "sid" in m:
            by_sid[m["sid"]].append((m["type"], json.dumps(m["msg"], separators=(",", ":"))))
    return by_sid


def _as_sent(want: dict[int, list[int]], events: list[Event]) -> dict[int, list[tuple[str, str]]]:
    by_id = {ev[0]: ev for ev in events}
    return {sid: [(TYPES[by_id[i][1]], by_id[i][4]) for i in ids] for sid, ids in want.items()}


def test_every_change_of_a_sid_is_recorded_at_its_exact_position() -> None:
    s, gen, sink = _session()
    events: list[Event] = []
    msgs: list[dict[str, Any]] = []

    def run(n: int) -> None:
        batch = gen.generate(n)
        events.extend(batch)
        s.deliver(batch)
        msgs.extend(json.loads(t) for t in s.data_to_send())

    run(300)
    p0 = gen.next_id - 1
    msgs += _cmd(s, 1, "subscribe", channels=["orderbook_delta", "ticker"], market_tickers=[*T[:3], "NOPE"])
    run(300)
    p1 = gen.next_id - 1
    msgs += _cmd(s, 2, "update_subscription", sid=1, action="add_markets", market_tickers=[T[3], T[0]])
    run(300)
    p2 = gen.next_id - 1
    msgs += _cmd(s, 3, "update_subscription", sid=1, action="delete_markets", market_tickers=[T[1], T[9]])
    msgs += _cmd(s, 4, "subscribe", channels=["trade", "market_lifecycle_v2"], market_tickers=T[5:7])
    run(300)
    p3 = gen.next_id - 1
    msgs += _cmd(s, 5, "unsubscribe", sids=[2])
    run(300)
    p4 = gen.next_id - 1
    s.end(p4)
    recs = sink.records
    subs = [r for r in recs if isinstance(r, (Subscribed, Unsubscribed))]
    assert subs == [
        Subscribed(1, 1, "orderbook_delta", T[:3], p0, 42),
        Subscribed(1, 2, "ticker", T[:3], p0, 42),
        Subscribed(1, 1, "orderbook_delta", [T[3]], p1, 42),
        Unsubscribed(1, 1, "orderbook_delta", [T[1]], p2, 42, "delete_markets"),
        Subscribed(1, 3, "trade", T[5:7], p2, 42),
        Subscribed(1, 4, "market_lifecycle_v2", [ALL_MARKETS], p2, 42),
        Unsubscribed(1, 2, "ticker", [ALL_MARKETS], p3, 42, "unsubscribe"),
        Unsubscribed(1, 1, "orderbook_delta", [ALL_MARKETS], p4, 42, "closed"),
        Unsubscribed(1, 3, "trade", [ALL_MARKETS], p4, 42, "closed"),
        Unsubscribed(1, 4, "market_lifecycle_v2", [ALL_MARKETS], p4, 42, "closed"),
    ]
    snaps = [r for r in recs if isinstance(r, SnapshotSent)]
    wire_snaps = [m for m in msgs if m["type"] == "orderbook_snapshot"]
    assert [(r.market, r.after_id) for r in snaps] == [(T[0], p0), (T[1], p0), (T[2], p0), (T[3], p1)]
    for r, m in zip(snaps, wire_snaps, strict=True):
        assert (r.conn, r.sid, r.use_yes_price) == (1, m["sid"], False)
        assert [list(x) for x in r.yes] == m["msg"].get("yes_dollars_fp", [])
        assert [list(x) for x in r.no] == m["msg"].get("no_dollars_fp", [])
    want = expected_per_sid(recs, events, s.markets)
    got = _received(msgs)
    assert {sid: got.get(sid, []) for sid in want} == _as_sent(want, events)
    assert len(want[1]) > 100 and len(want[2]) > 10


def test_drop_and_freeze_record_exactly_the_ids_kept_back() -> None:
    s, gen, sink = _session()
    events: list[Event] = []
    msgs: list[dict[str, Any]] = []
    msgs += _cmd(s, 1, "subscribe", channels=["orderbook_delta", "ticker"], market_tickers=T)

    def run(n: int) -> None:
        batch = gen.generate(n)
        events.extend(batch)
        s.deliver(batch)
        msgs.extend(json.loads(t) for t in s.data_to_send())

    run(200)
    s.drop_next = 3
    s.update_flags()
    run(200)
    s.frozen = True
    s.update_flags()
    before = len(events)
    run(100)
    in_freeze = events[before:]
    s.frozen = False
    s.update_flags()
    run(200)
    kept = [r for r in sink.records if isinstance(r, Suppressed)]
    dropped = [i for r in kept if r.reason == "drop" for i in r.ids]
    assert len(dropped) == 3 and all(r.sid == 1 for r in kept if r.reason == "drop"), "drop: seq messages only"
    frozen = {r.sid: r.ids for r in kept if r.reason == "freeze"}
    assert set(frozen) == {1, 2}
    mine = [ev[0] for ev in in_freeze if ev[1] in (0, CH_TICKER) and ev[2] < 10]
    assert sorted(frozen[1] + frozen[2]) == mine and len(mine) > 20
    assert s.suppressed == 3 + len(frozen[1]) + len(frozen[2])
    want = expected_per_sid(sink.records, events, s.markets)
    got = _received(msgs)
    assert {sid: got[sid] for sid in want} == _as_sent(want, events)


def test_overflow_kill_is_recorded_before_the_first_event_the_sid_missed() -> None:
    s, gen, sink = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T)
    _cmd(s, 2, "subscribe", channels=["market_lifecycle_v2"])
    s.deliver(gen.generate(100))
    s.overflowing = True
    s.update_flags()
    batch = gen.generate(50)
    s.deliver(batch)
    first = next(ev[0] for ev in batch if ev[1] == 0 and ev[2] < 10)
    assert [r for r in sink.records if isinstance(r, Unsubscribed)] == [
        Unsubscribed(1, 1, "orderbook_delta", [ALL_MARKETS], first - 1, 42, "overflow")
    ]


def test_redeliver_sends_the_same_seq_twice_and_goes_on() -> None:
    s, gen, _ = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T)
    s.redeliver_next = 1
    s.update_flags()
    s.deliver(gen.generate(300))
    out = s.data_to_send()
    seqs = [json.loads(t)["seq"] for t in out]
    assert seqs[:3] == [11, 11, 12] and out[0] == out[1]
    assert seqs[2:] == list(range(12, 12 + len(seqs) - 2))
    assert s.redelivered == 1 and not s._slow


def test_event_level_messages_ride_the_lifecycle_sid_with_their_own_type() -> None:
    s, gen, _ = _session(fee_update_per_s=20.0, unknown_per_s=10.0)
    _cmd(s, 1, "subscribe", channels=["market_lifecycle_v2"])
    _cmd(s, 2, "subscribe", channels=["orderbook_delta"], market_tickers=T)
    s.deliver(gen.generate(2000))
    msgs = [json.loads(t) for t in s.data_to_send()]
    life = [m for m in msgs if m["sid"] == 1]
    assert {m["type"] for m in life} == {"event_fee_update", "market_lifecycle_v2"}
    assert [m["seq"] for m in life] == list(range(1, len(life) + 1))
    assert all("event_ticker" in m["msg"] for m in life if m["type"] == "event_fee_update")
    assert {m["type"] for m in msgs if m["sid"] == 2} == {"orderbook_delta"}


def test_use_yes_price_snapshots_are_recorded_as_sent() -> None:
    s, _, sink = _session()
    out = _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T[:4], use_yes_price=True)
    snaps = [r for r in sink.records if isinstance(r, SnapshotSent)]
    assert len(snaps) == 4 and all(r.use_yes_price for r in snaps)
    for r, m in zip(snaps, out[1:], strict=True):
        assert [list(x) for x in r.no] == m["msg"].get("no_dollars_fp", [])
