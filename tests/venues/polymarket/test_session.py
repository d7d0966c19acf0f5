"""The sans-I/O Polymarket session: subscribe batches and limits, heartbeat, splitting and keying, book placement,
what it detects without sequence numbers (down windows, best bid/ask disagreement) and dead-lettering."""

from __future__ import annotations

import json
from typing import Any

from schemas.raw import RawFrame, decode_gap, decode_raw
from venues.polymarket import wire
from venues.polymarket.session import PolymarketSession

MS = 1_000_000
S = 1_000_000_000


class Out:
    def __init__(self) -> None:
        self.frames: list[RawFrame] = []
        self.dead: list[tuple[bytes, str]] = []

    def session(self, assets: list[str], **kw: Any) -> PolymarketSession:
        s = PolymarketSession(
            gatherer="g1", conn_id=1, emit=lambda m, b: self.frames.append(decode_raw(b)),
            dead=lambda b, r: self.dead.append((b, r)), **kw,
        )  # fmt: skip
        assert s.add_markets(assets) == []
        return s

    def kinds(self) -> list[str]:
        return [f.kind for f in self.frames]


def book(asset: str, ts: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "event_type": "book", "asset_id": asset, "market": "0xc", "timestamp": str(ts), "hash": "h",
        "bids": [{"price": p, "size": s} for p, s in bids], "asks": [{"price": p, "size": s} for p, s in asks],
    }  # fmt: skip


def change(ts: int, *entries: tuple[str, str, str, str, str, str]) -> dict[str, Any]:
    keys = ("asset_id", "price", "size", "side", "best_bid", "best_ask")
    return {"event_type": "price_change", "market": "0xc", "timestamp": str(ts),
            "price_changes": [dict(zip(keys, e, strict=True)) for e in entries]}  # fmt: skip


def trade(asset: str, ts: int) -> dict[str, Any]:
    return {"event_type": "last_trade_price", "asset_id": asset, "market": "0xc", "price": "0.5", "size": "3",
            "side": "BUY", "fee_rate_bps": "0", "timestamp": str(ts)}  # fmt: skip


def send(s: PolymarketSession, msg: Any, at_ns: int) -> None:
    s.receive(json.dumps(msg).encode(), at_ns)


def test_subscribe_in_batches_and_resubscribe_everything_on_reconnect() -> None:
    out = Out()
    s = out.session(["a", "b", "c", "d", "e"], ids_per_frame=2, max_assets=6)
    s.connected(0)
    sent = [json.loads(x) for x in s.data_to_send()]
    assert sent == [
        {"type": "market", "assets_ids": ["a", "b"], "custom_feature_enabled": False},
        {"operation": "subscribe", "assets_ids": ["c", "d"]},
        {"operation": "subscribe", "assets_ids": ["e"]},
    ]
    assert s.add_markets(["f", "g", "a"]) == ["g"]  # over max_assets: the caller puts it on another connection
    assert [json.loads(x) for x in s.data_to_send()] == [{"operation": "subscribe", "assets_ids": ["f"]}]
    s.remove_markets(["b", "zz"])
    assert [json.loads(x) for x in s.data_to_send()] == [{"operation": "unsubscribe", "assets_ids": ["b"]}]
    s.disconnected(1 * S)
    s.connected(2 * S)
    assert [json.loads(x)["assets_ids"] for x in s.data_to_send()] == [["a", "c"], ["d", "e"], ["f"]]


def test_ping_cadence_pong_and_timeout() -> None:
    out = Out()
    s = out.session(["a"], ping_interval_s=10, pong_timeout_s=15)
    s.connected(0)
    s.data_to_send()
    s.tick(9 * S)
    assert s.data_to_send() == []
    s.tick(10 * S)
    assert s.data_to_send() == [b"PING"]
    s.receive(b"PONG", 10 * S + 5 * MS)
    s.tick(20 * S)
    assert s.data_to_send() == [b"PING"]
    s.tick(30 * S)
    s.tick(36 * S)  # no PONG for the PING of 20 s
    assert s.needs_reconnect and s.stats.pong_timeouts == 1 and out.frames == [] and out.dead == []


def test_frames_are_split_keyed_and_foreign_entries_dropped() -> None:
    out = Out()
    s = out.session(["a", "b"])
    s.connected(0)
    batch = [
        book("a", 100, [("0.4", "10")], [("0.6", "5")]),
        change(100, ("a", "0.4", "12", "BUY", "0.4", "0.6"), ("x", "0.6", "12", "SELL", "0", "0.6")),
        trade("b", 101),
    ]
    send(s, batch, 1 * S)
    s.flush(2 * S)
    assert sorted(out.kinds()) == ["delta", "snapshot", "trade"] and s.stats.foreign == 1
    delta = next(f for f in out.frames if f.kind == "delta")
    assert delta.market == "a" and delta.venue == "polymarket" and delta.sid is None and delta.seq is None
    assert json.loads(delta.payload)["price_changes"] == [batch[1]["price_changes"][0]]  # the entry, verbatim
    snap = next(f for f in out.frames if f.kind == "snapshot")
    assert snap.venue_ms == 100 and snap.after_keys == [delta.event_key]  # the change at 100 came after the book


def test_book_is_released_by_its_tokens_next_millisecond_or_the_hold() -> None:
    out = Out()
    s = out.session(["a", "b"], book_hold_s=1.0)
    s.connected(0)
    send(s, book("a", 100, [], []), 1 * S)
    send(s, trade("b", 101), 1 * S + MS)  # another token's later message proves nothing about a's stream
    assert out.kinds() == ["trade"]
    send(s, trade("a", 100), 1 * S + 2 * MS)  # a's message of the book's millisecond, after it
    send(s, trade("a", 101), 1 * S + 3 * MS)  # a's stream moved on: the book's position is known
    assert out.kinds() == ["trade", "trade", "snapshot", "trade"]
    assert out.frames[2].after_keys == [out.frames[1].event_key]
    send(s, book("b", 200, [], []), 2 * S)
    s.tick(2 * S + 999 * MS)
    assert len(out.frames) == 4
    s.tick(3 * S)
    assert out.kinds()[-1] == "snapshot"


def test_best_bid_ask_disagreement_is_a_gap_and_resubscribes_the_token() -> None:
    out = Out()
    s = out.session(["a"])
    s.connected(0)
    s.data_to_send()
    send(s, book("a", 100, [("0.4", "10")], [("0.6", "5")]), 1 * S)
    send(s, change(101, ("a", "0.41", "3", "BUY", "0.41", "0.6")), 2 * S)  # agrees
    assert s.stats.book_mismatch == 0
    # the venue's best bid is 0.42: a change to 0.42 never arrived
    send(s, change(103, ("a", "0.39", "3", "BUY", "0.42", "0.6")), 3 * S)
    gaps = [f for f in out.frames if f.kind == "gap"]
    assert len(gaps) == 1 and s.stats.book_mismatch == 1
    report = decode_gap(gaps[0].payload)
    assert (report.kind, report.markets, report.from_ns, report.to_ns) == ("book_check", ["a"], 2 * S, 3 * S)
    assert [json.loads(x) for x in s.data_to_send()] == [
        {"operation": "unsubscribe", "assets_ids": ["a"]},
        {"operation": "subscribe", "assets_ids": ["a"]},
    ]
    send(s, change(104, ("a", "0.38", "3", "BUY", "0.99", "0.6")), 4 * S)  # unchecked until a fresh book
    assert s.stats.book_mismatch == 1 and out.kinds().count("delta") == 3


def test_a_reconnect_reports_the_window_the_connection_was_down() -> None:
    out = Out()
    s = out.session(["a", "b"])
    s.connected(0)
    send(s, trade("a", 100), 5 * S)
    s.disconnected(7 * S)
    s.connected(9 * S)
    send(s, book("a", 300, [], []), 10 * S)
    gap = next(f for f in out.frames if f.kind == "gap")
    report = decode_gap(gap.payload)
    assert (report.kind, report.markets, report.from_ns, report.to_ns) == ("down", ["a", "b"], 5 * S, 10 * S)


def test_bad_input_is_dead_lettered_and_the_rest_kept() -> None:
    out = Out()
    s = out.session(["a"])
    s.connected(0)
    s.receive(b"not json", 1)
    s.receive(b'{"no_type":1}', 2)
    send(s, change(100, ("a", "NaN", "3", "BUY", "0", "1"), ("a", "0.5", "3", "BUY", "0.5", "1")), 3)
    send(s, {"event_type": "best_bid_ask", "asset_id": "a"}, 4)  # a custom-feature type: ignored, not dead
    assert len(out.dead) == 3 and s.stats.dead == 3 and s.stats.ignored == 1
    assert b'"NaN"' in out.dead[2][0] and out.kinds() == ["delta"]


def test_two_gatherers_framing_differently_derive_the_same_keys() -> None:
    msgs = [change(100, ("a", "0.5", "1", "BUY", "0.5", "1")), change(100, ("a", "0.5", "1", "BUY", "0.5", "1")),
            trade("a", 100), trade("a", 100)]  # fmt: skip
    one, two = Out(), Out()
    s1, s2 = one.session(["a"]), two.session(["a"])
    s1.connected(0)
    s2.connected(0)
    send(s1, msgs, 1)
    for i, m in enumerate(msgs):
        spelled = json.loads(json.dumps(m).replace('"0.5"', '".50"'))
        send(s2, spelled, 2 + i)
    keys1 = [f.event_key for f in one.frames]
    assert keys1 == [f.event_key for f in two.frames] and len(set(keys1)) == 4
    assert s1.max_assets == wire.MAX_ASSETS_PER_CONNECTION
