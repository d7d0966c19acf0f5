"""Faults as a client sees them: seq gap, freeze (silence, pings still answered), close, refuse, malformed,
delay; injected through the Python API, the HTTP admin endpoint and the ``--faults`` schedule."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def _post(url: str, body: dict[str, Any]) -> Any:
    def go() -> Any:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    return await asyncio.get_running_loop().run_in_executor(None, go)


def _gaps(msgs: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    last: dict[int, int] = {}
    gaps = []
    for m in msgs:
        if "seq" not in m or m["type"] in ("ok", "unsubscribed"):
            continue
        sid, seq = m["sid"], m["seq"]
        if sid in last and seq != last[sid] + 1:
            gaps.append((sid, last[sid], seq))
        last[sid] = seq
    return gaps


TICKERS = [f"KXSIM-E{i // 10}-M{i}" for i in range(20)]
SUB = {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": TICKERS}}


def test_drop_shows_as_one_seq_gap_on_the_targeted_connection_only(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=2000.0) as sim, kit.ws_client(sim) as a, kit.ws_client(sim) as b:
            for c in (a, b):
                await c.reply(await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=TICKERS))
            await asyncio.sleep(0.3)
            reply = await _post(f"http://127.0.0.1:{sim.port}/_sim/faults", {"fault": "drop", "conn_id": 1})
            assert reply == {"ok": True, "connections": 1}
            await asyncio.sleep(0.3)
            await sim.stop_generating()
            got_a, _ = await a.reply(await a.cmd("list_subscriptions"))
            got_b, _ = await b.reply(await b.cmd("list_subscriptions"))
            gaps = _gaps(got_a)
            assert len(gaps) == 1 and gaps[0][2] == gaps[0][1] + 2
            assert _gaps(got_b) == []

    asyncio.run(body())


def test_freeze_is_silence_with_heartbeats_then_a_gap(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=2000.0, heartbeat_s=0.1, pong_timeout_s=2.0) as sim:
            raw = kit.RawClient(sim.ws_url)
            await raw.open()
            raw.send(SUB)
            await raw.run_for(0.3)
            sim.faults.freeze(0.8)
            t0 = time.monotonic()
            await raw.run_for(1.5)
            assert not raw.closed
            arrived = [(at, json.loads(t)) for at, t in raw.texts]
            msgs = [m for _, m in arrived]
            gaps = _gaps(msgs)
            assert len(gaps) == 1, "the frozen stretch shows as one seq gap"
            after_gap = next(at for at, m in arrived if m.get("seq") == gaps[0][2])
            assert after_gap >= t0 + 0.7, "nothing generated during the freeze was sent"
            assert len([at for at, _ in raw.pings if t0 < at < after_gap]) >= 3, "heartbeats went on"
            assert sim.server.connections[1].session.suppressed > 0
            raw.close()

    asyncio.run(body())


def test_close_refuse_and_malformed(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=200.0) as sim:
            async with kit.ws_client(sim) as c:
                await c.reply(await c.cmd("subscribe", channels=["ticker"]))
                assert sim.faults.malformed() == 1
                bad = None
                for _ in range(500):
                    text = await asyncio.wait_for(c.ws.recv(), 5)
                    try:
                        json.loads(text)
                    except ValueError:
                        bad = text
                        break
                assert bad is not None
                assert sim.faults.close_connections() == 1
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(c.ws.recv(), 5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            sim.faults.refuse_connections(0.5)
            with pytest.raises(InvalidStatus) as err:
                async with kit.ws_client(sim):
                    pass
            assert err.value.response.status_code == 503
            await asyncio.sleep(0.6)
            async with kit.ws_client(sim) as c:
                _, reply = await c.reply(await c.cmd("list_subscriptions"))
                assert reply["type"] == "ok"
            assert sim.server.refused == 1

    asyncio.run(body())


def test_delay_holds_frames_without_losing_any(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=1000.0) as sim:
            raw = kit.RawClient(sim.ws_url)
            await raw.open()
            raw.send(SUB)
            await raw.run_for(0.2)
            fault = {"kind": "delay", "seconds": 0.5, "duration_s": 0.3}
            await _post(f"http://127.0.0.1:{sim.port}/_sim/faults", fault)
            t0 = time.monotonic()
            await raw.run_for(1.2)
            stats = sim.stats()["connections"][0]
            assert stats["delayed_batches"] > 0
            assert _gaps([json.loads(t) for _, t in raw.texts]) == []
            assert len([t for at, t in raw.texts if at > t0 + 0.45]) > 100
            raw.close()

    asyncio.run(body())


def test_schedule_admin_markets_and_quiesce(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=500.0, faults="drop#1@0.5s") as sim, kit.ws_client(sim) as c:
            await c.reply(await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=TICKERS))
            await c.reply(await c.cmd("subscribe", channels=["market_lifecycle_v2"]))
            base = f"http://127.0.0.1:{sim.port}/_sim"
            created = (await _post(f"{base}/markets", {}))["ticker"]
            assert (await _post(f"{base}/settle", {"ticker": created, "result": "no"})) == {"ok": True}
            deadline = time.monotonic() + 10
            while not sim.faults.history and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            stopped = await _post(f"{base}/stop-generating", {})
            msgs, _ = await c.reply(await c.cmd("list_subscriptions"))
            life = [
                (m["msg"]["market_ticker"], m["msg"]["event_type"]) for m in msgs if m["type"] == "market_lifecycle_v2"
            ]
            assert life == [(created, "created"), (created, "activated"), (created, "determined"), (created, "settled")]
            assert len(_gaps(msgs)) == 1
            stats = sim.stats()
            assert stats["events_generated"] == stopped["events_generated"] > 0
            assert [f["kind"] for f in stats["faults"]] == ["drop"]
            assert stats["connections"][0]["data_messages"] > 0
            await asyncio.sleep(0.2)
            assert sim.stats()["events_generated"] == stopped["events_generated"]

    asyncio.run(body())


def test_cli_prints_urls_and_exits_after_duration(tmp_path: Any) -> None:
    truth = tmp_path / "cli.truth"
    proc = subprocess.run(
        [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--markets", "10", "--rate", "200",
         "--duration", "1", "--truth", str(truth), "--faults", "drop@0.5s", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60, env={"MDPIPE_RUN_DIR": str(tmp_path / "run"), "PATH": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("REST http://127.0.0.1:") and lines[0].endswith("/trade-api/v2")
    assert lines[1].startswith("WS ws://127.0.0.1:") and lines[1].endswith("/trade-api/ws/v2")
    from venue_sim.truth import read_truth

    assert sum(1 for _ in read_truth(truth)) > 100


def test_same_seed_and_clock_origin_give_the_same_truth(kit: SimpleNamespace, tmp_path: Any) -> None:
    from venue_sim.truth import read_truth

    async def one(name: str) -> list[tuple[int, str, str, int, bytes]]:
        path = tmp_path / name
        async with kit.running_sim(markets=300, rate=3000.0, seed=11, truth_path=str(path), churn_per_s=20.0,
                                   base_ts_ms=1_767_225_600_000):  # fmt: skip
            await asyncio.sleep(0.8)
        return [(e.id, e.kind, e.market, e.ts_ms, e.msg) for e in read_truth(path)]

    a = asyncio.run(one("a.truth"))
    b = asyncio.run(one("b.truth"))
    n = min(len(a), len(b))
    assert n > 200
    assert a[:n] == b[:n]
    assert {k for _, k, _, _, _ in a} == {"delta", "ticker", "trade", "lifecycle"}


def test_redeliver_and_bad_number_over_the_admin_api(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=2000.0) as sim, kit.ws_client(sim) as c:
            await c.reply(await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=TICKERS))
            base = f"http://127.0.0.1:{sim.port}/_sim"
            assert await _post(f"{base}/faults", {"kind": "redeliver", "conn_id": 1}) == {"ok": True, "connections": 1}
            assert (await _post(f"{base}/faults", {"spec": "badnumber:digits@0,badnumber:nan@0"}))["scheduled"] == 2
            await asyncio.sleep(0.3)
            await sim.stop_generating()
            msgs, _ = await c.reply(await c.cmd("list_subscriptions"))
            seqs = [m["seq"] for m in msgs if m["type"] == "orderbook_delta"]
            repeats = [a for a, b in itertools.pairwise(seqs) if a == b]
            assert len(repeats) == 1, "one re-delivered seq"
            assert sorted(set(seqs)) == list(range(seqs[0], seqs[-1] + 1)), "and no gap"
            # (the re-delivered message may be one of the bad ones: count distinct seqs)
            raw = {m["seq"] for m in msgs if m["type"] == "orderbook_delta" and len(m["msg"]["delta_fp"]) > 100}
            nan = {m["seq"] for m in msgs if m["type"] == "orderbook_delta" and m["msg"]["delta_fp"] == "NaN"}
            assert len(raw) == 1 and len(nan) == 1
            stats = sim.stats()
            assert stats["behaviours"]["redelivered"] == 1 and stats["behaviours"]["bad_numbers"] == 2
            assert [f["kind"] for f in stats["faults"]] == ["redeliver", "badnumber", "badnumber"]
            assert [f.get("variant") for f in stats["faults"]][1:] == ["digits", "nan"]

    asyncio.run(body())


def test_lifecycle_admin_endpoint(kit: SimpleNamespace) -> None:
    async def body() -> None:
        async with kit.running_sim(markets=20, rate=200.0) as sim, kit.ws_client(sim) as c:
            await c.reply(await c.cmd("subscribe", channels=["market_lifecycle_v2"]))
            base = f"http://127.0.0.1:{sim.port}/_sim"
            for action in ("deactivate", "activate", "metadata_legacy", "unknown", "fee_set"):
                assert await _post(f"{base}/lifecycle", {"ticker": TICKERS[2], "action": action}) == {"ok": True}
            assert await _post(f"{base}/lifecycle", {"ticker": TICKERS[2], "action": "activate"}) == {"ok": False}
            msgs = [await c.recv() for _ in range(5)]
            assert [m["type"] for m in msgs] == ["market_lifecycle_v2"] * 4 + ["event_fee_update"]
            assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
            assert msgs[0]["msg"] == {"market_ticker": TICKERS[2], "event_type": "deactivated", "is_deactivated": True}
            assert "event_type" not in msgs[2]["msg"] and msgs[2]["msg"]["market_ticker"] == TICKERS[2]
            assert msgs[4]["msg"]["event_ticker"] == "KXSIM-E0"

    asyncio.run(body())
