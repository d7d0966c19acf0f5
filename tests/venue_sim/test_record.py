"""The venue's record through the real server: a scripted run (subscribe, drop, add markets, close) whose record
predicts exactly what the client received; book checkpoints that equal the initial books plus the truth deltas up
to their time; connection ends of every kind; REST lagging the WebSocket over HTTP; the CLI flags."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from websockets.exceptions import ConnectionClosed

from venue_sim.book import Books
from venue_sim.record import (
    ALL_MARKETS,
    BadMessage,
    BookCheckpoint,
    ConnClosed,
    ConnOpened,
    MarketLive,
    Record,
    SnapshotSent,
    Subscribed,
    Suppressed,
    Unsubscribed,
    read_record,
    record_path,
)
from venue_sim.truth import TruthEvent, read_truth
from venues import default_name, get_venue

WIRE = get_venue(default_name()).emulator_wire()  # the truth format: how the record spells book levels

WIRE_TYPE = {"delta": "orderbook_delta", "ticker": "ticker", "trade": "trade", "lifecycle": "market_lifecycle_v2"}
CHANNEL = {"delta": "orderbook_delta", "ticker": "ticker", "trade": "trade", "lifecycle": "market_lifecycle_v2"}
T = [f"KXSIM-E{i // 10}-M{i}" for i in range(30)]


def _type(e: TruthEvent) -> str:
    return e.wire_type or WIRE_TYPE[e.kind]


def predicted(records: list[Record], truth: list[TruthEvent], conn: int) -> dict[int, list[int]]:
    """Event ids each sid of ``conn`` must have received, from the record alone (the rule verify applies)."""
    changes: dict[int, list[Subscribed | Unsubscribed]] = defaultdict(list)
    kept: set[tuple[int, int]] = set()
    for r in records:
        if isinstance(r, (Subscribed, Unsubscribed)) and r.conn == conn:
            changes[r.sid].append(r)
        elif isinstance(r, Suppressed) and r.conn == conn:
            kept |= {(r.sid, i) for i in r.ids}
    out: dict[int, list[int]] = {}
    for sid, chs in changes.items():
        got = []
        for e in truth:
            if CHANNEL[e.kind] != chs[0].channel:
                continue
            covered: set[str] = set()
            for c in chs:
                if c.after_id >= e.id:
                    break
                if isinstance(c, Subscribed):
                    covered |= set(c.markets)
                elif ALL_MARKETS in c.markets:
                    covered = set()
                else:
                    covered -= set(c.markets)
            if (ALL_MARKETS in covered or e.market in covered) and (sid, e.id) not in kept:
                got.append(e.id)
        out[sid] = got
    return out


def received(msgs: list[dict[str, Any]]) -> dict[int, list[tuple[str, bytes]]]:
    """(type, body) of every data message per sid, in arrival order (identical bodies cannot be told apart)."""
    out: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
    for m in msgs:
        if m["type"] not in ("subscribed", "ok", "error", "unsubscribed", "orderbook_snapshot"):
            out[m["sid"]].append((m["type"], json.dumps(m["msg"], separators=(",", ":")).encode()))
    return out


async def _drain(c: Any) -> list[dict[str, Any]]:
    msgs = []
    try:
        while True:
            msgs.append(json.loads(await asyncio.wait_for(c.ws.recv(), 10)))
    except ConnectionClosed:
        return msgs


def _closed_run(
    kit: SimpleNamespace, truth_path: Path, before: Any = None, after: Any = None
) -> tuple[list[dict[str, Any]], int, list[TruthEvent], list[Record]]:
    """Subscribe connection 1 to 20 markets' deltas, 0.3 s, ``await before(sim, client)``; note the connection's
    position and close it by fault, call ``after(sim)`` in the same step; drain. Returns (messages, the position noted,
    truth, record)."""

    async def body() -> tuple[list[dict[str, Any]], int]:
        sim_ctx = kit.running_sim(markets=20, rate=2000.0, truth_path=str(truth_path))
        async with sim_ctx as sim, kit.ws_client(sim) as c:
            await c.cmd("subscribe", channels=["orderbook_delta"], market_tickers=T[:20])
            await asyncio.sleep(0.3)
            if before is not None:
                await before(sim, c)
            at_close = sim.server.connections[1].position
            sim.faults.close_connections(conn_id=1)
            if after is not None:
                after(sim)
            msgs = await _drain(c)
            await asyncio.sleep(0.3)
            return msgs, at_close

    msgs, at_close = asyncio.run(body())
    return msgs, at_close, list(read_truth(truth_path)), list(read_record(record_path(truth_path)))


def test_a_scripted_run_is_recorded_exactly(kit: SimpleNamespace, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.msgpack"

    async def body() -> list[dict[str, Any]]:
        sim_ctx = kit.running_sim(markets=30, rate=3000.0, truth_path=str(truth_path), churn_per_s=5.0)
        async with sim_ctx as sim, kit.ws_client(sim, user_agent_header="mdpipe-gather/g1") as c:
            msgs: list[dict[str, Any]] = []
            await asyncio.sleep(0.2)
            await c.cmd("subscribe", channels=["orderbook_delta", "trade"], market_tickers=T[:10])
            await c.cmd("subscribe", channels=["market_lifecycle_v2"])
            await asyncio.sleep(0.3)
            assert sim.faults.drop_next(conn_id=1, count=2) == 1
            await asyncio.sleep(0.3)
            await c.cmd("update_subscription", sid=1, action="add_markets", market_tickers=T[10:15])
            await c.cmd("update_subscription", sid=1, action="delete_markets", market_tickers=T[:2])
            await asyncio.sleep(0.3)
            assert sim.faults.close_connections(conn_id=1) == 1
            msgs += await _drain(c)
            await asyncio.sleep(0.3)
        return msgs

    msgs = asyncio.run(body())
    truth = list(read_truth(truth_path))
    records = list(read_record(record_path(truth_path)))
    assert record_path(truth_path).name == "truth.record.msgpack"
    opened = [r for r in records if isinstance(r, ConnOpened)]
    assert [(r.conn, r.client) for r in opened] == [(1, "mdpipe-gather/g1")]
    closed = [r for r in records if isinstance(r, ConnClosed)]
    assert [(r.conn, r.reason) for r in closed] == [(1, "fault")]
    ends = [r for r in records if isinstance(r, Unsubscribed) and r.reason == "closed"]
    assert sorted(r.sid for r in ends) == [1, 2, 3] and {r.after_id for r in ends} == {closed[0].after_id}
    subs = [(r.sid, r.channel, r.markets) for r in records if isinstance(r, Subscribed)]
    assert subs == [
        (1, "orderbook_delta", T[:10]),
        (2, "trade", T[:10]),
        (3, "market_lifecycle_v2", [ALL_MARKETS]),
        (1, "orderbook_delta", T[10:15]),
    ]
    deleted = [r for r in records if isinstance(r, Unsubscribed) and r.reason == "delete_markets"]
    assert [(r.sid, r.markets) for r in deleted] == [(1, T[:2])]
    dropped = [r for r in records if isinstance(r, Suppressed)]
    assert [(r.sid, r.reason, len(r.ids)) for r in dropped] in (
        [(1, "drop", 2)],
        [(2, "drop", 2)],
        [(1, "drop", 1), (2, "drop", 1)],
        [(2, "drop", 1), (1, "drop", 1)],
    )
    # The record alone predicts every data message the client got, per sid, in order.
    want = predicted(records, truth, conn=1)
    got = received(msgs)
    assert {sid: got.get(sid, []) for sid in want} == {
        sid: [(_type(truth[i - 1]), truth[i - 1].msg) for i in ids] for sid, ids in want.items()
    }
    assert len(want[1]) > 200 and want[3], "deltas and lifecycle messages (churn) flowed"
    # ... and where the seq gap is: the suppressed ids are exactly the missing seqs.
    seqs: dict[int, list[int]] = defaultdict(list)
    for m in msgs:
        if "seq" in m and m["type"] not in ("ok", "unsubscribed"):
            seqs[m["sid"]].append(m["seq"])
    gaps = sum(b - a - 1 for s in seqs.values() for a, b in itertools.pairwise(s))
    assert gaps == 2
    # snapshots: the book after their position, as sent
    snaps = [r for r in records if isinstance(r, SnapshotSent)]
    wire = [m for m in msgs if m["type"] == "orderbook_snapshot"]
    assert [r.market for r in snaps] == [m["msg"]["market_ticker"] for m in wire] == T[:15]
    for r, m in zip(snaps, wire, strict=True):
        assert [list(x) for x in r.yes] == m["msg"].get("yes_dollars_fp", [])
        assert [list(x) for x in r.no] == m["msg"].get("no_dollars_fp", [])
    live = [r for r in records if isinstance(r, MarketLive)]
    assert [r.market for r in live if r.event == "listed"] == [f"KXSIM-E{i // 10}-M{i}" for i in range(30)]
    created = {r.market for r in live if r.event == "created"}
    assert created and created <= {e.market for e in truth if b'"created"' in e.msg}
    for r in live:
        if r.after_id:
            assert f'"event_type":"{r.event}"'.encode() in truth[r.after_id - 1].msg
            assert truth[r.after_id - 1].market == r.market


def _book_from(levels: dict[str, list[Any]]) -> dict[str, dict[Decimal, Decimal]]:
    return {side: {Decimal(p): Decimal(c) for p, c in levels.get(side, [])} for side in ("yes", "no")}


def test_checkpoints_equal_initial_books_plus_truth_deltas(kit: SimpleNamespace, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.msgpack"

    async def body() -> None:
        sim_ctx = kit.running_sim(
            markets=40, rate=3000.0, seed=9, truth_path=str(truth_path), churn_per_s=4.0, checkpoint_s=0.25
        )
        async with sim_ctx as sim:
            await asyncio.sleep(0.5)
            for variant in ("exp", "nan", "digits", "negative"):
                sim.faults.bad_number(variant)
            await asyncio.sleep(0.8)

    asyncio.run(body())
    truth = list(read_truth(truth_path))
    records = list(read_record(record_path(truth_path)))
    bad = {r.id: r.reason for r in records if isinstance(r, BadMessage)}
    assert len(bad) == 4 and all(truth[i - 1].kind == "delta" for i in bad)
    checkpoints: dict[tuple[int, int], list[BookCheckpoint]] = defaultdict(list)
    for r in records:
        if isinstance(r, BookCheckpoint):
            checkpoints[(r.ts_ms, r.after_id)].append(r)
    assert len(checkpoints) >= 4
    assert max(after for _, after in checkpoints) == truth[-1].id, "a final checkpoint after the last event"
    fresh = Books(9)
    initial = {}
    for (at_ms, after_id), books in checkpoints.items():
        assert all(e.ts_ms <= at_ms for e in truth[:after_id]) and all(e.ts_ms > at_ms for e in truth[after_id:])
        replay: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        for e in truth:
            if e.kind != "delta" or e.ts_ms > at_ms or e.id in bad:
                continue
            msg = json.loads(e.msg)
            if e.market not in replay:
                m = int(e.market.rsplit("-M", 1)[1])
                fresh.grow(m + 1)
                yes, no = WIRE.wire_levels(fresh.mid(m), fresh.slots(m))
                initial[e.market] = replay[e.market] = _book_from({"yes": yes, "no": no})
                replay[e.market] = {k: dict(v) for k, v in initial[e.market].items()}
            side = replay[e.market][msg["side"]]
            price = Decimal(msg["price_dollars"])
            side[price] = side.get(price, Decimal(0)) + Decimal(msg["delta_fp"])
            if not side[price]:
                del side[price]
        assert {r.market for r in books} == set(replay)
        for r in books:
            assert _book_from({"yes": r.yes, "no": r.no}) == replay[r.market], (at_ms, r.market)


def test_every_kind_of_connection_end_is_recorded(kit: SimpleNamespace, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.msgpack"

    async def body() -> None:
        sim_ctx = kit.running_sim(
            markets=10, rate=500.0, truth_path=str(truth_path), heartbeat_s=0.2, pong_timeout_s=0.4
        )
        async with sim_ctx as sim:
            async with kit.ws_client(sim) as c:  # the client closes
                await c.reply(await c.cmd("subscribe", channels=["ticker"]))
            silent = kit.RawClient(sim.ws_url, headers={"User-Agent": "silent/1"})
            await silent.open()
            silent.answer_pings = False
            await silent.run_for(1.5)
            assert silent.closed
            silent.close()
            async with kit.ws_client(sim) as c:  # the venue stops with it open
                await c.reply(await c.cmd("subscribe", channels=["trade"]))
                await sim.stop()

    asyncio.run(body())
    records = list(read_record(record_path(truth_path)))
    closed = {r.conn: r.reason for r in records if isinstance(r, ConnClosed)}
    assert closed == {1: "client", 2: "heartbeat_timeout", 3: "server"}
    clients = {r.conn: r.client for r in records if isinstance(r, ConnOpened)}
    assert clients[2] == "silent/1" and clients[1].startswith("Python/")
    # a connection that never had anything to receive was still handed every batch while it was open
    opened_at = {r.conn: r.after_id for r in records if isinstance(r, ConnOpened)}
    closed_at = {r.conn: r.after_id for r in records if isinstance(r, ConnClosed)}
    assert closed_at[2] - opened_at[2] > 200
    ends = {r.conn: (r.sid, r.reason) for r in records if isinstance(r, Unsubscribed)}
    assert ends == {1: (1, "closed"), 3: (1, "closed")}


async def _get(url: str) -> Any:
    def go() -> Any:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    return await asyncio.get_running_loop().run_in_executor(None, go)


def test_rest_trails_the_websocket(kit: SimpleNamespace) -> None:
    async def body() -> None:
        sim_ctx = kit.running_sim(markets=20, rate=400.0, rest_lag_s=1.0, activate_after_s=0.4)
        async with sim_ctx as sim, kit.ws_client(sim) as c:
            await c.reply(await c.cmd("subscribe", channels=["market_lifecycle_v2"]))
            t0 = time.monotonic()
            new = sim.create_market()
            assert sim.lifecycle("deactivate", "KXSIM-E0-M1")

            async def status(ticker: str, filt: str = "") -> str | None:
                q = f"tickers={ticker}" + (f"&status={filt}" if filt else "")
                found = (await _get(f"{sim.rest_url}/markets?{q}"))["markets"]
                return found[0]["status"] if found else None

            async def at(seconds: float) -> None:
                await asyncio.sleep(max(0.0, t0 + seconds - time.monotonic()))

            # the WebSocket knows at once
            msgs = await c.until(lambda m: m.get("msg", {}).get("event_type") == "deactivated")
            assert [m["msg"]["event_type"] for m in msgs if m["type"] == "market_lifecycle_v2"] == [
                "created",
                "deactivated",
            ]
            await at(0.2)
            assert await status(new) is None, "a just-created market is not listed"
            assert await status("KXSIM-E0-M1") == "active"
            assert await status("KXSIM-E0-M1", "open") == "active"
            assert await status("KXSIM-E0-M1", "paused") is None
            opened = await _get(f"{sim.rest_url}/markets?status=open&limit=5")
            assert [m["ticker"] for m in opened["markets"]][:2] == ["KXSIM-E0-M0", "KXSIM-E0-M1"]
            await at(1.25)  # REST shows the venue as of ~0.25 s: created, not yet activated; M1 paused
            assert await status(new) == "initialized"
            assert await status(new, "unopened") == "initialized"
            assert await status("KXSIM-E0-M1") == "inactive"
            assert await status("KXSIM-E0-M1", "paused") == "inactive"
            assert sim.lifecycle("activate", "KXSIM-E0-M1")
            assert await status("KXSIM-E0-M1") == "inactive", "just re-activated: REST still says inactive"
            await at(1.9)
            assert await status(new, "open") == "active"
            assert sim.markets.status[sim.markets.index(new)] == 2

    asyncio.run(body())


def test_nothing_is_written_once_the_venue_decides_to_close(kit: SimpleNamespace, tmp_path: Path) -> None:
    # a batch generated after the close fault but before the close handshake starts (the close is a task) was
    # written and moved the connection's position, so a test reading the position at the fault raced the loop
    def next_tick(sim: Any) -> None:  # the next tick, before the close task has run
        sim._publish(sim.generator.generate(200))

    msgs, at_close, truth, records = _closed_run(kit, tmp_path / "truth.msgpack", after=next_tick)
    closed = next(r for r in records if isinstance(r, ConnClosed))
    assert closed.after_id == at_close < truth[-1].id - 100
    want = predicted(records, truth, conn=1)
    assert received(msgs)[1] == [(_type(truth[i - 1]), truth[i - 1].msg) for i in want[1]]
    assert len(want[1]) > 100


def test_a_command_read_after_the_close_decision_records_nothing(kit: SimpleNamespace, tmp_path: Path) -> None:
    # a command the venue read after its close fault (sent just before it, read after: the send does not yield to the
    # loop) was handled: its snapshots were recorded as sent (SnapshotSent, which verify matches snapshot rows against)
    # although the connection wrote nothing more
    async def get_snapshot(sim: Any, c: Any) -> None:
        await c.cmd("update_subscription", sid=1, action="get_snapshot")
        assert sim.server.connections[1].commands == 1  # not read yet: the subscribe only

    msgs, _, _, records = _closed_run(kit, tmp_path / "truth.msgpack", before=get_snapshot)
    sent = [r for r in records if isinstance(r, SnapshotSent)]
    got = [m for m in msgs if m.get("type") == "orderbook_snapshot"]
    assert len(got) == 20  # the subscription's own snapshots, one per market
    assert len(sent) == len(got)
    assert records.index(next(r for r in records if isinstance(r, ConnClosed))) > records.index(sent[-1])


def _held_snapshots_run(kit: SimpleNamespace, truth_path: Path, delay_s: float, wait_s: float) -> tuple[int, int]:
    """A ``get_snapshot`` whose 20 snapshots the delay fault holds for ``delay_s``; ``wait_s`` later the venue closes
    the connection. Returns (snapshots recorded as sent, snapshots the client received)."""

    async def held_snapshot(sim: Any, c: Any) -> None:
        sim.faults.delay(delay_s, conn_id=1, duration_s=1.0)
        await c.cmd("update_subscription", sid=1, action="get_snapshot")
        await asyncio.sleep(0.1)
        sc = sim.server.connections[1]
        assert sc.commands == 2 and any(batch[3] for batch in sc.delayed)  # handled: its records wait with the batch
        await asyncio.sleep(wait_s)

    msgs, _, _, records = _closed_run(kit, truth_path, before=held_snapshot)
    got = sum(m.get("type") == "orderbook_snapshot" for m in msgs)
    return sum(isinstance(r, SnapshotSent) for r in records), got


def test_a_snapshot_held_by_the_delay_fault_and_dropped_at_the_close_is_not_recorded(
    kit: SimpleNamespace, tmp_path: Path
) -> None:
    # the venue recorded a snapshot when it handled the command, so one whose reply the delay fault still held when
    # the close came (held batches are dropped then) was recorded as sent though the client never got it
    sent, got = _held_snapshots_run(kit, tmp_path / "truth.msgpack", delay_s=1.0, wait_s=0.0)
    assert got == 20  # the subscription's own snapshots, written before the delay
    assert sent == got


def test_a_snapshot_held_by_the_delay_fault_is_recorded_when_released(kit: SimpleNamespace, tmp_path: Path) -> None:
    sent, got = _held_snapshots_run(kit, tmp_path / "truth.msgpack", delay_s=0.2, wait_s=0.4)
    assert got == 40  # the subscription's and the get_snapshot's, released before the close
    assert sent == got


def test_cli_behaviour_flags_and_new_faults(tmp_path: Path) -> None:
    # the behaviours at 20 a second: about a dozen metadata and unknown-type messages in the run (at 3-4 a second
    # about three, and a CI run came out without a metadata update)
    truth = tmp_path / "cli.msgpack"
    proc = subprocess.run(
        [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--markets", "100", "--rate", "2000",
         "--duration", "1.5", "--truth", str(truth), "--faults", "badnumber:nan@0.5s,redeliver:2@0.6s",
         "--metrics-port", "0", "--dormant-share", "0.5", "--pause-rate", "20", "--pause-markets", "3",
         "--metadata-rate", "20", "--unknown-lifecycle-rate", "20", "--fee-update-rate", "20", "--event-lifecycle",
         "--churn", "10", "--activate-after", "0.2", "--rest-lag", "5", "--checkpoint-s", "0.5"],
        capture_output=True, text=True, timeout=60, env={"MDPIPE_RUN_DIR": str(tmp_path / "run"), "PATH": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = list(read_truth(truth))
    records = list(read_record(record_path(truth)))
    assert {e.wire_type for e in events} == {"", "event_lifecycle", "event_fee_update"}
    assert all(int(e.market.rsplit("-M", 1)[1]) < 50 for e in events if e.kind == "delta" and "-M" in e.market
               and int(e.market.rsplit("-M", 1)[1]) < 100)  # fmt: skip
    bodies = b"".join(e.msg for e in events)
    for needle in (b'"deactivated"', b'"metadata_updated"', b"trading_hours_updated", b'"created"', b"NaN"):
        assert needle in bodies
    assert [r.reason[:3] for r in records if isinstance(r, BadMessage)] == ["nan"]
    assert sum(isinstance(r, BookCheckpoint) for r in records) > 0
    bad = subprocess.run(
        [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--dormant-share", "1.5"],
        capture_output=True, text=True, timeout=60, env={"MDPIPE_RUN_DIR": str(tmp_path / "run"), "PATH": ""},
    )  # fmt: skip
    assert bad.returncode != 0 and "dormant_share" in bad.stderr


def test_batches_held_by_delay_count_when_released_and_not_at_all_if_the_close_comes_first(
    kit: SimpleNamespace, tmp_path: Path
) -> None:
    async def delay(sim: Any, _: Any) -> None:
        sim.faults.delay(0.4, conn_id=1, duration_s=1.0)
        await asyncio.sleep(0.6)  # batches of the first 0.2 s were released, the rest are held

    msgs, held_from, truth, records = _closed_run(kit, tmp_path / "truth.msgpack", before=delay)
    closed = next(r for r in records if isinstance(r, ConnClosed))
    assert closed.after_id == held_from < truth[-1].id - 100, "held batches never written do not count"
    assert not [r for r in records if isinstance(r, Suppressed)], "delayed is not suppressed"
    want = predicted(records, truth, conn=1)
    got = received(msgs)
    assert got[1] == [(_type(truth[i - 1]), truth[i - 1].msg) for i in want[1]]
    assert len(want[1]) > 200
