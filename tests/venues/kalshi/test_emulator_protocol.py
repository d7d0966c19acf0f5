"""Server protocol state without sockets: sids, seqs, command replies and every error code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from venue_sim.book import Books
from venue_sim.load import Generator
from venue_sim.markets import MarketTable
from venues.kalshi.emulator.protocol import ServerSession


def _session(markets: int = 20, sub_cap: int = 0) -> tuple[ServerSession, Generator]:
    table = MarketTable(markets, 5, 1_700_000_000_000)
    books = Books(5)
    gen = Generator(table, books, seed=5, rate=1000.0, identical_share=0.1)
    return ServerSession(1, table, books, sub_cap=sub_cap), gen


def _cmd(s: ServerSession, cid: int, cmd: str, **params: Any) -> list[dict[str, Any]]:
    s.receive_text(json.dumps({"id": cid, "cmd": cmd, "params": params}))
    return [json.loads(t) for t in s.data_to_send()]


T = [f"KXSIM-E0-M{i}" for i in range(10)]


def test_subscribe_two_channels_gives_two_sids_and_snapshots_from_seq_1() -> None:
    s, _ = _session()
    out = _cmd(s, 1, "subscribe", channels=["orderbook_delta", "ticker"], market_tickers=T[:3])
    assert out[0] == {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
    snaps = out[1:4]
    assert [m["type"] for m in snaps] == ["orderbook_snapshot"] * 3
    assert [m["seq"] for m in snaps] == [1, 2, 3]
    assert [m["msg"]["market_ticker"] for m in snaps] == T[:3]
    assert out[4] == {"id": 1, "type": "subscribed", "msg": {"channel": "ticker", "sid": 2}}
    assert len(out) == 5


def test_seq_is_per_sid_gap_free_and_ticker_has_none() -> None:
    s, gen = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T[:5])
    _cmd(s, 2, "subscribe", channels=["orderbook_delta"], market_tickers=T[5:])
    _cmd(s, 3, "subscribe", channels=["ticker", "trade", "market_lifecycle_v2"])
    s.deliver(gen.generate(3000))
    msgs = [json.loads(t) for t in s.data_to_send()]
    last: dict[int, int] = {1: 5, 2: 5, 4: 0, 5: 0}
    kinds = set()
    for m in msgs:
        kinds.add(m["type"])
        if m["type"] == "ticker":
            assert "seq" not in m and m["sid"] == 3
            continue
        assert m["seq"] == last[m["sid"]] + 1
        last[m["sid"]] = m["seq"]
    assert kinds == {"orderbook_delta", "ticker", "trade"}
    assert last[1] > 5 and last[2] > 5 and last[4] > 0


def test_update_subscription_add_delete_and_get_snapshot() -> None:
    s, gen = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T[:2])
    out = _cmd(s, 2, "update_subscription", sids=[1], action="add_markets", market_tickers=[T[2], T[0]])
    assert out[0] == {"id": 2, "sid": 1, "seq": 2, "type": "ok", "msg": {"market_tickers": T[:3]}}
    assert [(m["type"], m["seq"], m["msg"]["market_ticker"]) for m in out[1:]] == [("orderbook_snapshot", 3, T[2])]
    out = _cmd(s, 3, "update_subscription", sid=1, action="delete_markets", market_ticker=T[0])
    assert out == [{"id": 3, "sid": 1, "seq": 3, "type": "ok", "msg": {"market_tickers": T[1:3]}}]
    out = _cmd(s, 4, "update_subscription", sid=1, action="get_snapshot")
    assert [(m["id"], m["seq"], m["msg"]["market_ticker"]) for m in out] == [(4, 4, T[1]), (4, 5, T[2])]
    s.deliver(gen.generate(2000))
    tickers = {json.loads(t)["msg"]["market_ticker"] for t in s.data_to_send()}
    assert tickers == set(T[1:3])


def test_skip_ticker_ack_omits_the_market_list() -> None:
    s, _ = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T[:2], skip_ticker_ack=True)
    out = _cmd(s, 2, "update_subscription", sid=1, action="delete_markets", market_tickers=T[:1])
    assert out == [{"id": 2, "sid": 1, "seq": 2, "type": "ok", "msg": {}}]


def test_unsubscribe_and_list() -> None:
    s, _ = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta", "trade"], market_tickers=T[:2])
    assert _cmd(s, 2, "list_subscriptions") == [
        {"id": 2, "type": "ok", "msg": [{"channel": "orderbook_delta", "sid": 1}, {"channel": "trade", "sid": 2}]}
    ]
    assert _cmd(s, 3, "unsubscribe", sids=[1]) == [{"id": 3, "sid": 1, "seq": 2, "type": "unsubscribed"}]
    assert _cmd(s, 4, "list_subscriptions")[0]["msg"] == [{"channel": "trade", "sid": 2}]
    assert _cmd(s, 5, "subscribe", channels=["trade"])[0]["msg"]["sid"] == 3  # counter never reused


@pytest.mark.parametrize(
    ("cmd", "params", "code"),
    [
        ("subscribe", {"channels": ["orderbook_delta"]}, 14),
        ("subscribe", {"channels": ["orderbook_delta"], "market_tickers": []}, 14),
        ("subscribe", {"channels": ["nope"], "market_tickers": T[:1]}, 8),
        ("subscribe", {"channels": []}, 3),
        ("subscribe", {"channels": "ticker"}, 11),
        ("subscribe", {"channels": ["ticker"], "market_tickers": "X"}, 11),
        ("subscribe", {"channels": ["orderbook_delta"], "market_tickers": T[:4]}, 26),
        ("frobnicate", {}, 5),
        ("update_subscription", {"sids": [1, 2], "action": "add_markets", "market_tickers": T[:1]}, 12),
        ("update_subscription", {"action": "add_markets", "market_tickers": T[:1]}, 12),
        ("update_subscription", {"sid": 99, "action": "add_markets", "market_tickers": T[:1]}, 7),
        ("update_subscription", {"sid": 1, "action": "explode", "market_tickers": T[:1]}, 13),
        ("update_subscription", {"sid": 1, "market_tickers": T[:1]}, 15),
        ("update_subscription", {"sid": 1, "action": "add_markets"}, 14),
        ("update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": T[2:5]}, 26),
        ("update_subscription", {"sid": 2, "action": "get_snapshot"}, 11),
        ("unsubscribe", {"sids": [42]}, 7),
        ("unsubscribe", {}, 4),
    ],
)
def test_error_codes(cmd: str, params: dict[str, Any], code: int) -> None:
    s, _ = _session(sub_cap=3)
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T[:2])
    _cmd(s, 2, "subscribe", channels=["trade"], market_tickers=T[:2])
    out = _cmd(s, 7, cmd, **params)
    assert out[-1]["type"] == "error"
    assert out[-1]["id"] == 7
    assert out[-1]["msg"]["code"] == code
    assert isinstance(out[-1]["msg"]["msg"], str) and out[-1]["msg"]["msg"]


def test_params_missing_or_not_an_object_and_garbage() -> None:
    s, _ = _session()
    s.receive_text('{"id":3,"cmd":"subscribe","params":[1]}')
    s.receive_text('{"id":4,"cmd":"unsubscribe"}')
    s.receive_text('{"id":5,"cmd":"list_subscriptions"}')
    s.receive_text("not json")
    out = [json.loads(t) for t in s.data_to_send()]
    assert [(m["id"], m["type"], m["msg"]["code"] if m["type"] == "error" else None) for m in out] == [
        (3, "error", 2),
        (4, "error", 2),
        (5, "ok", None),
        (0, "error", 1),
    ]


def test_use_yes_price_converts_no_side() -> None:
    s, gen = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T, use_yes_price=True)
    plain, _ = _session()
    snaps = {}
    for m in _cmd(plain, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T)[1:]:
        snaps[m["msg"]["market_ticker"]] = m["msg"]
    events = gen.generate(500)
    s.deliver(events)
    plain.deliver(events)
    yes_msgs = [json.loads(t) for t in s.data_to_send()]
    no_msgs = [json.loads(t) for t in plain.data_to_send()]
    assert len(yes_msgs) == len(no_msgs) > 0
    for a, b in zip(yes_msgs, no_msgs, strict=True):
        if b["msg"]["side"] == "no":
            assert a["msg"]["price_dollars"] == f"{1 - float(b['msg']['price_dollars']):.4f}"
        else:
            assert a == b


def test_drop_and_freeze_advance_seq_without_sending() -> None:
    s, gen = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T)
    s.drop_next = 1
    s.update_flags()
    s.deliver(gen.generate(50))
    seqs = [json.loads(t)["seq"] for t in s.data_to_send()]
    assert seqs[0] == 12  # seq 11 (first delta after 10 snapshots) was dropped
    assert seqs == list(range(12, 12 + len(seqs)))
    s.frozen = True
    s.update_flags()
    s.deliver(gen.generate(50))
    assert s.data_to_send() == []
    s.frozen = False
    s.update_flags()
    s.deliver(gen.generate(50))
    nxt = [json.loads(t)["seq"] for t in s.data_to_send()]
    assert nxt[0] > seqs[-1] + 1


def test_overflow_kills_the_sids_with_error_25() -> None:
    s, gen = _session()
    _cmd(s, 1, "subscribe", channels=["orderbook_delta"], market_tickers=T)
    _cmd(s, 2, "subscribe", channels=["market_lifecycle_v2"])
    s.overflowing = True
    s.update_flags()
    s.deliver(gen.generate(50))
    out = [json.loads(t) for t in s.data_to_send()]
    assert out == [{"type": "error", "sid": 1, "seq": 10, "msg": {"code": 25, "msg": "Subscription buffer overflow"}}]
    assert list(s.subs) == [2]
