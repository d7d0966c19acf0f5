"""The emulator over real sockets: REST paging, WebSocket commands, snapshots and seq, auth, heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from venue_sim.keys import generate_test_keypair, sign
from venue_sim.truth import read_truth


async def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    def go() -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    return await asyncio.get_running_loop().run_in_executor(None, go)


def test_rest_markets_paging_status_filter_and_orderbook(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=250, rate=50.0) as sim:
            ticker = sim.create_market()
            sim.settle_market("KXSIM-E0-M3", result="yes")
            seen: list[str] = []
            cursor = ""
            pages = 0
            while True:
                status, page = await _http(f"{sim.rest_url}/markets?limit=100&cursor={cursor}")
                assert status == 200
                pages += 1
                seen += [m["ticker"] for m in page["markets"]]
                cursor = page["cursor"]
                if not cursor:
                    break
            assert pages == 3
            assert len(seen) == len(set(seen)) == 251
            assert ticker in seen
            market = page["markets"][-1]
            for field in (
                "event_ticker",
                "market_type",
                "status",
                "open_time",
                "close_time",
                "created_time",
                "latest_expiration_time",
                "yes_bid_dollars",
                "yes_ask_dollars",
                "volume_fp",
                "price_level_structure",
                "price_ranges",
                "rules_primary",
                "can_close_early",
                "result",
            ):
                assert field in market
            _, settled = await _http(f"{sim.rest_url}/markets?status=settled")
            assert [(m["ticker"], m["status"], m["result"]) for m in settled["markets"]] == [
                ("KXSIM-E0-M3", "finalized", "yes")
            ]
            _, opened = await _http(f"{sim.rest_url}/markets?status=open&limit=1000")
            assert len(opened["markets"]) == 250 and opened["cursor"] == ""
            assert {m["status"] for m in opened["markets"]} == {"active"}
            assert (await _http(f"{sim.rest_url}/markets?status=bogus"))[0] == 400
            assert (await _http(f"{sim.rest_url}/markets?limit=1001"))[0] == 400
            await sim.stop_generating()  # books stand still from here
            status, book = await _http(f"{sim.rest_url}/markets/KXSIM-E0-M1/orderbook")
            assert status == 200 and set(book["orderbook_fp"]) == {"yes_dollars", "no_dollars"}
            local = sim.books.peek(1)
            assert {Decimal(p): Decimal(c) for p, c in book["orderbook_fp"]["yes_dollars"]} == {
                Decimal(p) / 100: Decimal(c) / 100 for p, c in local.yes.items()
            }
            assert (await _http(f"{sim.rest_url}/markets/NOPE/orderbook"))[0] == 404
            status, many = await _http(f"{sim.rest_url}/markets/orderbooks?tickers=KXSIM-E0-M1,KXSIM-E0-M2")
            assert status == 200
            assert [b["ticker"] for b in many["orderbooks"]] == ["KXSIM-E0-M1", "KXSIM-E0-M2"]
            assert many["orderbooks"][0]["orderbook_fp"] == book["orderbook_fp"]

    asyncio.run(body())


def _apply(book: dict[str, dict[Decimal, Decimal]], msg: dict[str, Any]) -> None:
    side = book[msg["side"]]
    price = Decimal(msg["price_dollars"])
    new = side.get(price, Decimal(0)) + Decimal(msg["delta_fp"])
    assert new >= 0
    if new:
        side[price] = new
    else:
        side.pop(price, None)


def test_books_rebuilt_from_snapshot_and_deltas_match_the_venue(kit: SimpleNamespace) -> None:
    """Two connections, 200 markets over 3 sids each: gap-free seq per sid and exact books at the end."""

    async def body() -> None:
        tickers = [f"KXSIM-E{i // 10}-M{i}" for i in range(200)]
        sim_ctx = kit.running_sim(markets=200, rate=4000.0, identical_share=0.1)
        async with sim_ctx as sim, kit.ws_client(sim) as a, kit.ws_client(sim) as b:
            for c in (a, b):
                for chunk in (tickers[:70], tickers[70:140], tickers[140:]):
                    await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=chunk)
            await asyncio.sleep(1.5)
            await sim.stop_generating()
            bodies = []
            for c in (a, b):
                cid = await c.cmd("list_subscriptions")
                msgs, _ = await c.reply(cid)
                books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
                last: dict[int, int] = {}
                for m in msgs:
                    if m["type"] == "subscribed":
                        continue
                    sid, seq = m["sid"], m["seq"]
                    assert seq == last.get(sid, 0) + 1
                    last[sid] = seq
                    t = m["msg"]["market_ticker"]
                    if m["type"] == "orderbook_snapshot":
                        books[t] = {
                            side: {Decimal(p): Decimal(q) for p, q in m["msg"].get(f"{side}_dollars_fp", [])}
                            for side in ("yes", "no")
                        }
                    else:
                        _apply(books[t], m["msg"])
                assert sorted(last) == [1, 2, 3]
                for i, t in enumerate(tickers):
                    venue = sim.books.peek(i)
                    for side, levels in (("yes", venue.yes), ("no", venue.no)):
                        want = {Decimal(p) / 100: Decimal(q) / 100 for p, q in levels.items()}
                        assert books[t][side] == want, (t, side)
                bodies.append([m["msg"] for m in msgs if m["type"] == "orderbook_delta"])
            assert bodies[0] == bodies[1]
            assert len(bodies[0]) > 3000
            assert sim.generator.identical > 0

    asyncio.run(body())


def test_truth_file_matches_what_an_all_market_subscriber_receives(kit: SimpleNamespace, tmp_path: Path) -> None:
    async def body() -> None:
        truth = tmp_path / "venue.truth"
        sim_ctx = kit.running_sim(markets=30, rate=2000.0, truth_path=str(truth), churn_per_s=20.0)
        async with sim_ctx as sim, kit.ws_client(sim) as c:
            tickers = [sim.markets.ticker(i) for i in range(30)]
            await c.cmd("subscribe", channels=["ticker", "trade", "market_lifecycle_v2"])
            await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=tickers)
            await c.reply(2)
            start_id = sim.generator.next_id
            await asyncio.sleep(1.0)
            await sim.stop_generating()
            msgs, _ = await c.reply(await c.cmd("list_subscriptions"))
        got = [
            (m["type"], json.dumps(m["msg"], separators=(",", ":")))
            for m in msgs
            if "seq" in m or m["type"] == "ticker"
        ]
        got = [g for g in got if g[0] != "orderbook_snapshot"]
        events = [e for e in read_truth(truth) if e.id >= start_id]
        created = {e.market for e in events if b'"created"' in e.msg}
        assert created, "churn created markets while running"
        # deltas of markets created after the orderbook subscription are not subscribed; all else is
        want = [e for e in events if not (e.kind == "delta" and e.market in created)]
        kind_of = {"orderbook_delta": "delta", "ticker": "ticker", "trade": "trade", "market_lifecycle_v2": "lifecycle"}
        assert [(kind_of[t], body) for t, body in got][-len(want) :] == [(e.kind, e.msg.decode()) for e in want]
        assert all(e.gen_ns > 0 and e.ts_ms > 0 for e in events)
        assert [e.id for e in read_truth(truth)] == list(range(1, sim.generator.next_id))

    asyncio.run(body())


def test_error_replies_over_the_wire(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(sub_cap=2, rate=10.0) as sim, kit.ws_client(sim) as c:
            cases = [
                ("subscribe", {"channels": ["orderbook_delta"]}, 14),
                (
                    "subscribe",
                    {
                        "channels": ["orderbook_delta"],
                        "market_tickers": ["KXSIM-E0-M1"] * 0 + ["KXSIM-E0-M1", "KXSIM-E0-M2", "KXSIM-E0-M3"],
                    },
                    26,
                ),
                ("update_subscription", {"sids": [1, 2], "action": "get_snapshot"}, 12),
                ("update_subscription", {"sid": 5, "action": "get_snapshot"}, 7),
                ("nope", {}, 5),
                ("subscribe", {"channels": ["fills_v9"], "market_ticker": "KXSIM-E0-M1"}, 8),
                ("subscribe", {"channels": ["ticker"], "market_tickers": 7}, 11),
            ]
            for cmd, params, code in cases:
                cid = await c.cmd(cmd, **params)
                _, reply = await c.reply(cid)
                assert reply["type"] == "error" and reply["msg"]["code"] == code, (cmd, params, reply)
            await c.ws.send("{not json")
            reply = await c.recv()
            assert reply["msg"]["code"] == 1

    asyncio.run(body())


def test_heartbeat_pings_and_silent_client_is_disconnected(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(heartbeat_s=0.2, pong_timeout_s=0.5, rate=10.0) as sim:
            good = kit.RawClient(sim.ws_url)
            await good.open()
            bad = kit.RawClient(sim.ws_url)
            await bad.open()
            bad.answer_pings = False
            await asyncio.gather(good.run_for(2.0), bad.run_for(2.0))
            assert len(good.pings) >= 4 and {p for _, p in good.pings} == {b"heartbeat"}
            assert not good.closed
            assert bad.closed
            assert sim.server.closed_by_heartbeat == 1
            good.close()

    asyncio.run(body())


def test_auth_refused_and_accepted(kit: SimpleNamespace, tmp_path: Path) -> None:
    keys = generate_test_keypair(tmp_path)
    other = generate_test_keypair(tmp_path / "other")

    def headers(pem: str, ts: int | None = None) -> dict[str, str]:
        ts = ts or int(time.time() * 1000)
        return {
            "KALSHI-ACCESS-KEY": keys.key_id,
            "KALSHI-ACCESS-TIMESTAMP": str(ts),
            "KALSHI-ACCESS-SIGNATURE": sign(pem, ts, "GET", "/trade-api/ws/v2"),
        }

    async def body() -> None:
        async with kit.running_sim(auth=True, public_key_path=keys.public_path) as sim:
            for bad in (
                {},
                headers(other.private_key_pem),
                headers(keys.private_key_pem, ts=int(time.time() * 1000) - 3_600_000),
            ):
                with pytest.raises(InvalidStatus) as err:
                    async with kit.ws_client(sim, additional_headers=bad):
                        pass
                assert err.value.response.status_code == 401
            async with kit.ws_client(sim, additional_headers=headers(keys.private_key_pem)) as c:
                _, reply = await c.reply(await c.cmd("list_subscriptions"))
                assert reply == {"id": 1, "type": "ok", "msg": []}
            assert sim.server.auth_failures == 3
            assert (await _http(f"{sim.rest_url}/markets?limit=1"))[0] == 200  # REST discovery needs no auth

    asyncio.run(body())


def test_slow_reader_gets_error_25(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=20000.0, send_buffer_bytes=32 << 10) as sim:
            raw = kit.RawClient(sim.ws_url)
            await raw.open()
            tickers = [sim.markets.ticker(i) for i in range(20)]
            raw.send(
                {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": tickers}}
            )
            deadline = time.monotonic() + 20
            while sim.server.connections[1].session.overflowed_sids == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # not reading: kernel buffers, then the send buffer fill up
            assert sim.server.connections[1].session.overflowed_sids == 1
            await sim.stop_generating()
            while not any('"code":25' in t for _, t in raw.texts) and time.monotonic() < deadline:
                await raw.pump(1.0)
            err = next(json.loads(t) for _, t in raw.texts if '"code":25' in t)
            assert err["type"] == "error" and err["sid"] == 1
            assert err["msg"] == {"code": 25, "msg": "Subscription buffer overflow"}
            seqs = [json.loads(t)["seq"] for _, t in raw.texts if t.startswith('{"type":"orderbook_')]
            assert seqs == list(range(1, len(seqs) + 1)) and err["seq"] >= seqs[-1]
            raw.close()

    asyncio.run(body())
