"""KalshiSession against the emulator's sans-I/O server session: commands and replies piped without sockets."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from schemas.raw import RawFrame, decode_raw, encode_raw
from venue_sim.book import Books
from venue_sim.load import Generator
from venue_sim.markets import MarketTable
from venues.kalshi.anchors import NEXT, PREV, TRAIL_NS
from venues.kalshi.emulator.protocol import ServerSession
from venues.kalshi.keys import EventKeyer
from venues.kalshi.protocol import KalshiSession

CHANNELS = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]


class Pair:
    """A client session wired to a server session; ``pump`` moves messages both ways until quiet."""

    def __init__(
        self,
        markets: int = 12,
        sub_cap: int = 0,
        client_cap: int = 100,
        lifecycle: bool = True,
        anchor_max_wait_ms: float = 0.0,
    ) -> None:
        self.table = MarketTable(markets, 5, 1_767_225_600_000)
        self.books = Books(5)
        self.gen = Generator(self.table, self.books, seed=5, rate=1000.0, identical_share=0.2)
        self.server = ServerSession(1, self.table, self.books, sub_cap=sub_cap)
        self.frames: list[RawFrame] = []
        self.dead: list[tuple[bytes, str]] = []
        self.lifecycles: list[str] = []
        self.client = KalshiSession(
            gatherer="g1",
            conn_id=0,
            channels=CHANNELS,
            sub_cap=client_cap,
            keyer=EventKeyer(),
            emit=lambda market, value: self.frames.append(decode_raw(value)),
            dead=lambda data, reason: self.dead.append((data, reason)),
            lifecycle=lifecycle,
            on_lifecycle=lambda market, lc, ns: self.lifecycles.append(f"{market}:{lc.event_type}"),
            anchor_max_wait_ms=anchor_max_wait_ms,
        )
        self.sent: list[dict[str, Any]] = []
        self.now = 1

    def tickers(self) -> list[str]:
        return [self.table.ticker(i) for i in range(len(self.table))]

    def pump(self) -> None:
        for _ in range(100):
            out = self.client.data_to_send()
            for cmd in out:
                self.sent.append(json.loads(cmd))
                self.server.receive_text(cmd)
            replies = self.server.data_to_send()
            for text in replies:
                self.now += 1
                self.client.receive(text.encode(), self.now)
            if not out and not replies:
                break
        self.settle()

    def settle(self) -> None:
        """Let the session's holds run out: snapshots get their position, stalled lifecycle streams their keys."""
        self.client.tick(self.now + 10**12)

    def generate(self, n: int) -> None:
        self.server.deliver(self.gen.generate(n))
        self.pump()


def connected(pair: Pair) -> Pair:
    pair.client.add_markets(pair.tickers())
    pair.client.connected()
    pair.pump()
    return pair


def test_subscribe_all_markets_snapshots_and_data() -> None:
    p = connected(Pair())
    snaps = [f for f in p.frames if f.kind == "snapshot"]
    assert sorted(f.market for f in snaps) == sorted(p.tickers())
    group = p.client.groups[0]
    assert not group.pending and set(group.sids) == {"orderbook_delta", "trade", "ticker"}
    p.generate(500)
    kinds = {f.kind for f in p.frames}
    assert {"delta", "trade", "ticker"} <= kinds
    assert p.client.stats.gaps == 0 and not p.dead
    for f in p.frames:
        env = json.loads(f.payload)
        assert env["msg"]["market_ticker"] == f.market == env["msg"].get("market_ticker")
        assert f.sid == env["sid"] and f.seq == env.get("seq") and f.gatherer == "g1"
    trades = [f for f in p.frames if f.kind == "trade"]
    assert all(f.event_key == "t:" + json.loads(f.payload)["msg"]["trade_id"] for f in trades)
    assert len({f.event_key for f in p.frames if f.kind == "delta"}) == sum(f.kind == "delta" for f in p.frames)


def test_error_26_halves_the_chunk_until_accepted() -> None:
    p = connected(Pair(markets=12, sub_cap=3, client_cap=12))
    assert p.client.sub_cap <= 3
    assert all(len(g.markets) <= 3 and not g.pending for g in p.client.groups)
    assert sorted(m for g in p.client.groups for m in g.markets) == sorted(p.tickers())
    assert p.client.stats.errors >= 1
    assert sorted({f.market for f in p.frames if f.kind == "snapshot"}) == sorted(p.tickers())


def test_gap_requests_snapshot_for_that_sid_only() -> None:
    p = connected(Pair(markets=8, client_cap=4))
    assert len(p.client.groups) == 2
    p.generate(200)
    book_sids = {g.sids["orderbook_delta"]: g for g in p.client.groups}
    p.server.drop_next = 1
    p.server.update_flags()
    before = len(p.frames)
    for _ in range(50):
        p.generate(20)
        if p.client.stats.resnapshots or p.client.stats.gaps:
            break
    gaps = [f for f in p.frames[before:] if f.kind == "gap"]
    assert len(gaps) == 1 and p.client.stats.gaps == 1
    info = json.loads(gaps[0].payload)
    assert info["received"] == info["expected"] + 1 and info["conn"] == 0
    assert info["sid"] in book_sids  # seeded: the dropped message was a delta
    snap_cmds = [c for c in p.sent if c["params"].get("action") == "get_snapshot"]
    assert [c["params"]["sid"] for c in snap_cmds] == [info["sid"]]
    later = [f for f in p.frames[before:] if f.kind == "snapshot"]
    assert sorted(f.market for f in later) == sorted(book_sids[info["sid"]].markets)


def test_duplicate_seq_is_counted_not_recorded() -> None:
    p = connected(Pair(markets=2))
    p.generate(50)
    last = next(f for f in reversed(p.frames) if f.kind == "delta")
    n = len(p.frames)
    p.client.receive(last.payload, 99)
    assert len(p.frames) == n and p.client.stats.duplicates == 1


def test_malformed_and_unknown_frames_are_dead_letters_and_arrays_are_split() -> None:
    p = connected(Pair(markets=2))
    p.client.receive(b"not json", 1)
    p.client.receive(b'{"type":"mystery","msg":{}}', 1)
    p.client.receive(b'{"type":"orderbook_delta","sid":99,"seq":1,"msg":{"market_ticker":"M"}}', 1)
    assert len(p.dead) == 3 and p.client.stats.dead == 3
    p.client.receive(
        b'{"type":"orderbook_delta","sid":99,"seq":2,"msg":{"market_ticker":"M","price_dollars":"0.1",'
        b'"delta_fp":"1","side":"yes"}}',
        1,
    )
    assert p.client.stats.gaps == 0  # the malformed seq 1 still counted as received
    a = {
        "type": "trade",
        "sid": 50,
        "seq": 1,
        "msg": {
            "trade_id": "t1",
            "market_ticker": "A",
            "yes_price_dollars": "0.4",
            "no_price_dollars": "0.6",
            "count_fp": "1.00",
        },
    }
    b = {
        "type": "trade",
        "sid": 50,
        "seq": 2,
        "msg": {
            "trade_id": "t2",
            "market_ticker": "B",
            "yes_price_dollars": 0.5,
            "no_price_dollars": 0.5,
            "count_fp": 2,
        },
    }
    n = len(p.frames)
    p.client.receive(json.dumps([a, b]).encode(), 1)
    new = p.frames[n:]
    assert [(f.market, f.event_key) for f in new] == [("A", "t:t1"), ("B", "t:t2")]
    assert msgspec.json.decode(new[1].payload)["msg"]["count_fp"] == 2


def test_add_and_remove_markets_use_update_subscription_per_sid() -> None:
    p = Pair(markets=6)
    p.client.add_markets(p.tickers()[:4])
    p.client.connected()
    p.pump()
    p.client.add_markets(p.tickers()[4:])
    p.pump()
    adds = [c for c in p.sent if c["params"].get("action") == "add_markets"]
    assert len(adds) == 3 and all(c["params"]["market_tickers"] == p.tickers()[4:] for c in adds)
    assert {f.market for f in p.frames if f.kind == "snapshot"} == set(p.tickers())
    p.client.remove_markets([p.tickers()[0]])
    p.pump()
    deletes = [c for c in p.sent if c["params"].get("action") == "delete_markets"]
    assert len(deletes) == 3 and {c["params"]["sid"] for c in deletes} == set(p.client.groups[0].sids.values())
    assert p.tickers()[0] not in p.client.groups[0].markets


def test_buffer_overflow_error_resubscribes_that_group() -> None:
    p = connected(Pair(markets=4))
    old = dict(p.client.groups[0].sids)
    p.client.receive(
        json.dumps({"type": "error", "sid": old["orderbook_delta"], "msg": {"code": 25, "msg": "x"}}).encode(), 1
    )
    p.pump()
    assert p.client.stats.resubscribes == 1
    assert len(p.client.groups) == 1 and set(p.client.groups[0].sids.values()).isdisjoint(old.values())


def test_reconnect_resubscribes_everything_with_fresh_seq() -> None:
    p = connected(Pair(markets=3))
    p.generate(50)
    p.client.disconnected()
    p.server = ServerSession(2, p.table, p.books)
    p.client.connected()
    p.pump()
    p.generate(50)
    assert p.client.stats.gaps == 0
    assert sum(f.kind == "snapshot" for f in p.frames) == 6


def test_lifecycle_subscription_and_callback() -> None:
    p = connected(Pair(markets=3))
    assert any(c["params"]["channels"] == ["market_lifecycle_v2"] for c in p.sent)
    out: list[Any] = []
    p.gen.create_market(out)
    p.server.deliver(out)
    p.pump()
    assert any(x.endswith(":activated") for x in p.lifecycles)
    assert any(f.kind == "lifecycle" and f.event_key.startswith("l:") for f in p.frames)


def test_event_level_lifecycle_messages_are_recorded_under_their_event_ticker() -> None:
    p = connected(Pair(markets=1))
    body = {
        "event_ticker": "KXEV-1",
        "exchange_index": 1,
        "title": "t",
        "subtitle": "",
        "collateral_return_type": "",
        "series_ticker": "KX",
    }
    p.client.receive(json.dumps({"type": "event_lifecycle", "sid": 1, "seq": 1, "msg": body}).encode(), 5)
    fee = {"event_ticker": "KXEV-1", "fee_type_override": None, "fee_multiplier_override": None}
    p.client.receive(json.dumps({"type": "event_fee_update", "sid": 1, "seq": 2, "msg": fee}).encode(), 5)
    p.settle()  # the fee update waits for the next anchor; none comes, so the stalled stream keys it
    new = [f for f in p.frames if f.market == "KXEV-1"]
    assert [f.kind for f in new] == ["lifecycle", "lifecycle"] and not p.dead
    assert new[0].event_key != new[1].event_key and not p.lifecycles


def test_with_the_wait_cap_a_lifecycle_message_goes_at_the_cap_and_again_with_its_forward_key() -> None:
    p = connected(Pair(markets=1, anchor_max_wait_ms=500))
    ms = 1_000_000

    def event(seq: int, ticker: str, now: int) -> None:
        body = {"event_ticker": ticker, "title": "t", "series_ticker": "KX"}
        p.client.receive(json.dumps({"type": "event_lifecycle", "sid": 1, "seq": seq, "msg": body}).encode(), now)

    deactivated = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
    event(1, "KXEV-1", 1000 * ms)
    p.client.receive(
        json.dumps({"type": "market_lifecycle_v2", "sid": 1, "seq": 2, "msg": deactivated}).encode(), 1100 * ms
    )
    p.client.tick(1599 * ms)
    assert not [f for f in p.frames if f.market == "KX-A"]
    p.client.tick(1600 * ms)  # the cap: keyed by the anchor before it
    capped = [f for f in p.frames if f.market == "KX-A"]
    assert len(capped) == 1 and NEXT not in capped[0].weak_refs and PREV in capped[0].weak_refs
    event(3, "KXEV-2", 3000 * ms)  # the next anchor: the same copy again, with its forward key first
    again = [f for f in p.frames if f.market == "KX-A"][1:]
    assert len(again) == 1 and again[0].seq == 2 and again[0].payload == capped[0].payload
    assert again[0].event_key not in [capped[0].event_key, *capped[0].alt_keys]
    assert capped[0].event_key in again[0].alt_keys and NEXT in again[0].weak_refs


class _Peer:
    """Another session of the gatherer: what its lifecycle subscriptions received last."""

    def __init__(self) -> None:
        self.streams: list[list[tuple[int, str, bool]]] = []

    def lifecycle_streams(self) -> list[list[tuple[int, str, bool]]]:
        return self.streams


def test_a_subscription_that_ends_sends_the_copies_held_for_their_trail_when_due_even_when_another_covers_it() -> None:
    # another of the gatherer's lifecycle subscriptions received the waiting messages too (covered): those are
    # dropped, but a copy already keyed forward and held for its trail goes out when due, as it is (in due order with
    # the gatherer's other connections: ingest.held_order)
    ms = 1_000_000
    p = connected(Pair(markets=1))
    peer = _Peer()
    p.client._lifecycle_peers = lambda session: [peer]
    deactivated = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
    activated = {"market_ticker": "KX-A", "event_type": "activated", "is_deactivated": False}
    event = {"event_ticker": "KXEV-1", "title": "t", "series_ticker": "KX"}
    for seq, typ, body, now in (
        (1, "market_lifecycle_v2", deactivated, 1000 * ms),
        (2, "event_lifecycle", event, 1100 * ms),
        (3, "market_lifecycle_v2", activated, 1200 * ms),
    ):
        p.client.receive(json.dumps({"type": typ, "sid": 1, "seq": seq, "msg": body}).encode(), now)
    peer.streams = [[(pos + 40, content, anchor) for pos, content, anchor in p.client._chains[1].recent]]
    p.client.disconnected(1300 * ms)
    assert not [f for f in p.frames if f.market == "KX-A"]  # the deactivated one is held, the activated one dropped
    assert p.client.held_due_ns() == 1000 * ms + TRAIL_NS  # its trail ends TRAIL_NS after the message
    p.client.release_held(1000 * ms + TRAIL_NS)
    sent = [f for f in p.frames if f.market == "KX-A"]
    assert [f.seq for f in sent] == [1] and len(sent[0].weak_refs) == 2 and sent[0].weak_refs[1] == NEXT
    assert p.client.held_due_ns() is None


def test_a_copy_held_for_its_trail_is_due_trail_ns_after_the_message() -> None:
    # what ingest.held_order reads and calls across a gatherer's connections
    ms = 1_000_000
    p = connected(Pair(markets=1))
    deactivated = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
    event = {"event_ticker": "KXEV-1", "title": "t", "series_ticker": "KX"}
    assert p.client.held_due_ns() is None
    p.client.receive(json.dumps({"type": "market_lifecycle_v2", "sid": 1, "seq": 1, "msg": deactivated}).encode(), ms)
    p.client.receive(json.dumps({"type": "event_lifecycle", "sid": 1, "seq": 2, "msg": event}).encode(), 100 * ms)
    due = ms + TRAIL_NS
    assert p.client.held_due_ns() == due
    p.client.release_held(due - 1)
    assert not [f for f in p.frames if f.market == "KX-A"]
    p.client.release_held(due)
    assert [f.seq for f in p.frames if f.market == "KX-A"] == [1] and p.client.held_due_ns() is None


def test_a_copy_whose_forward_anchor_came_after_its_trail_is_sent_at_the_anchor() -> None:
    # no anchor can join its trail any more: held, it would only die with a gatherer killed meanwhile (the e2e's lost
    # `metadata_updated`, which only that gatherer had received)
    ms = 1_000_000
    p = connected(Pair(markets=1))
    deactivated = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
    event = {"event_ticker": "KXEV-1", "title": "t", "series_ticker": "KX"}
    p.client.receive(json.dumps({"type": "market_lifecycle_v2", "sid": 1, "seq": 1, "msg": deactivated}).encode(), ms)
    p.client.receive(json.dumps({"type": "event_lifecycle", "sid": 1, "seq": 2, "msg": event}).encode(), 6700 * ms)
    sent = [f for f in p.frames if f.market == "KX-A"]
    assert [f.seq for f in sent] == [1] and sent[0].weak_refs[1] == NEXT and p.client.held_due_ns() is None


def test_lifecycle_copies_name_their_subscription_instance_across_reconnects() -> None:
    """A reconnect numbers sids from 1 again: the copies' weak_sub differs, so the dedup stage tells them apart."""
    p = connected(Pair(markets=1))
    deactivated = {"market_ticker": "KX-A", "event_type": "deactivated", "is_deactivated": True}
    subs = []
    wire = json.dumps({"type": "market_lifecycle_v2", "sid": 1, "seq": 1, "msg": deactivated}).encode()
    for now in (5, 10**13):
        p.client.receive(wire, now)
        p.client.disconnected(now + 1)  # keys it (no other subscription covers it)
        p.client.connected(now + 2)
        new = [f for f in p.frames if f.market == "KX-A"]
        subs.append(new[-1].weak_sub)
        assert new[-1].weak_key and new[-1].weak_refs == [] and new[-1].seq == 1
    assert subs[0] != subs[1] and all(s.startswith("g1:0:1@") for s in subs)


def test_frames_are_byte_identical_to_encode_raw_of_the_struct() -> None:
    """The hot path encodes the RawFrame fields as a tuple: the bytes must be exactly ``encode_raw(RawFrame(...))``."""
    p = connected(Pair())
    raws: list[bytes] = []
    p.client._emit = lambda market, value: raws.append(value)
    p.generate(300)
    p.server.drop_next = 1  # a gap frame too
    p.server.update_flags()
    p.generate(50)
    frames = [decode_raw(v) for v in raws]
    assert {f.kind for f in frames} >= {"delta", "trade", "ticker", "gap"}
    assert all(encode_raw(f) == v for f, v in zip(frames, raws, strict=True))


def test_markets_added_to_a_live_group_get_the_orderbook_add_last() -> None:
    # The venue applies a connection's commands one by one and may publish events in between. The orderbook
    # snapshot starts our coverage of a market, so by then the trade and ticker sids must already carry it: with
    # the orderbook add first, a trade published between the adds reached no gatherer (bench-e2e `missing: 2`).
    p = Pair(markets=6)
    p.client.add_markets(p.tickers()[:4])
    p.client.connected()
    p.pump()
    p.client.outbox.clear()
    p.client.add_markets(p.tickers()[4:])
    adds = [json.loads(b)["params"] for b in p.client.outbox]
    adds = [a for a in adds if a.get("action") == "add_markets"]
    sids = p.client.groups[0].sids
    assert len(adds) == len(sids) == 3
    assert adds[-1]["sid"] == sids["orderbook_delta"]
    assert {a["sid"] for a in adds} == set(sids.values())
    p.pump()
    assert set(p.tickers()[4:]) <= set(p.client.groups[0].markets)
