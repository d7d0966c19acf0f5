"""Behaviours of the real venue through the emulator, real gatherers and the real broker (frames read back from
Kafka): identical lifecycle bodies minutes apart, a bad number, a connection of quiet markets, a reconnect window."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from mdpipe.config import SimConfig
from schemas.dlq import decode_dead_letter
from tests.venues.kalshi.dedup_events import dedup_events
from venue_sim.app import VenueSim
from venue_sim.markets import ST_ACTIVE, ST_INACTIVE
from venues.kalshi.emulator_wire import CH_LIFECYCLE, CH_ORDERBOOK

pytestmark = pytest.mark.integration


def _topics(make_topics: Any, gatherers: int = 1) -> list[dict[str, str]]:
    names = make_topics(2 * gatherers + 1)
    return [{"raw": names[2 * i], "dlq": names[2 * i + 1], "markets": names[-1]} for i in range(gatherers)]


def _sim(tmp_path: Path, **kw: Any) -> VenueSim:
    settings: dict[str, Any] = {"markets": 20, "rate": 200.0, "seed": 3, "churn_per_s": 0.0, **kw}
    return VenueSim(SimConfig(port=0, auth=False, truth_path=str(tmp_path / "truth.bin"), **settings))


def _lifecycle(sim: VenueSim, market: int, body: str) -> None:
    """Publish one lifecycle message as the venue does (truth and every subscribed connection)."""
    out: list[Any] = []
    sim.generator._event(out, CH_LIFECYCLE, market, sim.generator.now_ms(), body)
    sim._publish(out)


async def _both_up(g: Any, ih: Any, markets: int) -> None:
    await ih.wait_for(lambda: len(g.plan.conn_of) == markets and all(c.up for c in g.connections), 20, "subscribed")


def test_identical_lifecycle_bodies_apart_stay_two_events_and_gatherers_agree(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    """A market paused and resumed twice, 12 s apart (the old keyer counted identical bodies in a 10 s receive
    window, so both `deactivated` got one key and dedup merged them). g2 starts after the first cycle."""
    t1, t2 = _topics(make_topics, 2)
    sim = _sim(tmp_path)
    m = 3
    ticker = sim.markets.ticker(m)
    deact = f'{{"market_ticker":"{ticker}","event_type":"deactivated","is_deactivated":true}}'
    act = f'{{"market_ticker":"{ticker}","event_type":"activated","is_deactivated":false}}'

    async def scenario() -> None:
        await sim.start()
        g1 = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "s1", topics=t1, gid="g1")
        g2 = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "s2", topics=t2, gid="g2")

        async def body() -> None:
            await _both_up(g1, ih, 20)
            _lifecycle(sim, m, deact)
            _lifecycle(sim, m, act)
            sim.create_market()  # created + activated: the first is an anchor
            await asyncio.sleep(1.0)

            async def second_cycle() -> None:
                await _both_up(g2, ih, 21)
                await asyncio.sleep(11.0)
                _lifecycle(sim, m, deact)
                _lifecycle(sim, m, act)
                sim.create_market()
                await asyncio.sleep(1.0)

            await ih.run_with(g2, second_cycle)

        try:
            await ih.run_with(g1, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())
    f1 = [f for f in ih.read_frames(kafka_bootstrap, t1["raw"]) if f.kind == "lifecycle" and f.market == ticker]
    f2 = [f for f in ih.read_frames(kafka_bootstrap, t2["raw"]) if f.kind == "lifecycle" and f.market == ticker]
    # each lifecycle subscription (two per gatherer) records its own copy of every non-anchor message
    by_sub1, by_sub2 = _by_subscription(f1), _by_subscription(f2)
    assert len(by_sub1) == 2 and len(by_sub2) == 2, (list(by_sub1), list(by_sub2))
    keys1 = [f.event_key for f in next(iter(by_sub1.values()))]
    for frames in by_sub1.values():
        assert [ih.body_of(f) for f in frames] == [deact.encode(), act.encode()] * 2
        assert [f.event_key for f in frames] == keys1, "the two subscriptions of one gatherer keyed them differently"
    assert len(set(keys1)) == 4, "identical bodies 12 s apart share a key"
    for frames in by_sub2.values():
        assert [f.event_key for f in frames] == keys1[2:], "the later gatherer keyed them differently"


def _by_subscription(frames: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in frames:
        out.setdefault(f.weak_sub, []).append(f)
    return out


def test_a_bad_number_is_a_dead_letter_and_the_connection_stays(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    (topics,) = _topics(make_topics)
    sim = _sim(tmp_path)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "spool", topics=topics)

        async def body() -> None:
            await _both_up(g, ih, 20)
            await asyncio.sleep(0.5)
            for sc in sim.server.connections.values():  # an otherwise valid delta on the sid, at its next seq
                sub = next((s for s in sc.session.subs.values() if s.channel == CH_ORDERBOOK), None)
                if sub is None:  # the gatherer's connection carrying only the lifecycle channel
                    continue
                sub.seq += 1
                ticker = sim.markets.ticker(0)
                bad = (
                    f'{{"type":"orderbook_delta","sid":{sub.sid},"seq":{sub.seq},"msg":{{"market_ticker":"{ticker}",'
                    f'"price_dollars":"1E+1000000","delta_fp":"1.00","side":"yes","ts_ms":{int(time.time() * 1000)}}}}}'
                )
                from venue_sim.server import frame_text

                sc.pending_raw.append(frame_text(bad.encode()))
                sim.server.flush(sc)
            mark = g.stats.by_kind["delta"]
            await ih.wait_for(lambda: g.stats.by_kind["delta"] > mark + 100, 20, "data after the bad number")

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    assert sum(c.reconnects for c in g.connections) == 0, "the bad number dropped the connection"
    assert g.stats.dead == 1 and g.stats.gaps == 0
    letters = [decode_dead_letter(v) for _, v in ih.read_topic(kafka_bootstrap, topics["dlq"])]
    assert len(letters) == 1 and "price_dollars" in letters[0].reason and b"1E+1000000" in letters[0].payload


def test_a_connection_of_quiet_markets_stays_up_and_a_frozen_one_is_caught(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    """Two connections of 10 markets; the second holds only markets that stop trading (paused at the venue). With a
    1 s silence timeout the quiet one must stay up (it used to be torn down because its sibling had data); then the
    busy one is frozen (socket open, no data, seq moving on) and must be caught."""
    (topics,) = _topics(make_topics)
    sim = _sim(tmp_path, rate=300.0)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap, sim, tmp_path / "spool", topics=topics, per_connection=10, silence_timeout_s=1.0
        )

        async def body() -> None:
            await _both_up(g, ih, 20)
            for i in range(10, 20):
                sim.markets.status[i] = ST_INACTIVE  # no more data for the second connection's markets
            quiet = next(c for c in g.connections if sim.markets.ticker(15) in c.session.markets)
            busy = next(c for c in g.connections if c is not quiet)
            await asyncio.sleep(10.0)
            assert quiet.reconnects == 0, "a connection of quiet markets was torn down"
            assert g.stats.probes >= 3  # it was asked, and answered in step
            before = busy.reconnects
            busy_id = next(cid for cid, sc in sim.server.connections.items() if sc.session.data_messages > 100)
            sim.faults.freeze(30.0, conn_id=busy_id)
            await ih.wait_for(lambda: busy.reconnects > before, 15, "the frozen connection reconnects")
            assert quiet.reconnects == 0
            for i in range(10, 20):
                sim.markets.status[i] = ST_ACTIVE

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    asyncio.run(scenario())


def test_a_reconnect_window_becomes_a_gap_record(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    (topics,) = _topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, int] = {}

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "spool", topics=topics)

        async def body() -> None:
            await _both_up(g, ih, 20)
            await asyncio.sleep(0.5)
            marks["closed"] = time.time_ns()
            sim.faults.close_connections()
            await ih.wait_for(lambda: all(c.reconnects for c in g.connections), 20, "reconnect")
            await _both_up(g, ih, 20)
            await asyncio.sleep(0.5)
            marks["back"] = time.time_ns()

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())
    gaps = [json.loads(f.payload) for f in ih.read_frames(kafka_bootstrap, topics["raw"]) if f.kind == "gap"]
    down = [g for g in gaps if g.get("kind") == "down"]
    assert down, "the reconnect window was only a reconnect count"
    covered = {m for g in down for m in g.get("markets", [])}
    assert {sim.markets.ticker(i) for i in range(20)} <= covered and "*" in covered  # lifecycle too
    for g in down:
        assert g["from_ns"] <= marks["closed"] + 100_000_000 and marks["closed"] <= g["to_ns"] <= marks["back"]


def test_a_dropped_lifecycle_connection_does_not_key_its_waiting_messages_apart(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    """A `deactivated` waits for the next anchor to get its key; the venue closes the connection it came on before
    the anchor. With a second lifecycle subscription the gatherer still keys it like every other gatherer (with one,
    it fell back to the anchor before it: a different key, hence a duplicate row). Few markets: one connection of
    markets, so the second lifecycle subscription rides a connection of its own."""
    t1, t2 = _topics(make_topics, 2)
    sim = _sim(tmp_path)
    ticker = sim.markets.ticker(4)

    async def scenario() -> None:
        await sim.start()
        g1 = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "s1", topics=t1, gid="g1")
        g2 = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "s2", topics=t2, gid="g2")

        async def both() -> None:
            await _both_up(g1, ih, 20)
            await _both_up(g2, ih, 20)
            await asyncio.sleep(0.5)
            sim.lifecycle("deactivate", ticker)
            await asyncio.sleep(0.3)
            markets_conn = next(
                cid
                for cid, sc in sim.server.connections.items()
                if sc.ws.request.headers.get("User-Agent") == "mdpipe-gather/g1"
                and any(s.markets is not None for s in sc.session.subs.values())
            )
            sim.faults.close_connections(markets_conn)
            await asyncio.sleep(0.5)
            sim.create_market()  # the anchor after the `deactivated`
            await asyncio.sleep(1.5)

        async def inner() -> None:
            await ih.run_with(g2, both)

        try:
            await ih.run_with(g1, inner)
        finally:
            await sim.stop()

    asyncio.run(scenario())
    f1 = [f for f in ih.read_frames(kafka_bootstrap, t1["raw"]) if f.kind == "lifecycle" and f.market == ticker]
    f2 = [f for f in ih.read_frames(kafka_bootstrap, t2["raw"]) if f.kind == "lifecycle" and f.market == ticker]
    assert f1 and f2
    # g1's surviving subscription keys it like g2 (forward, at the anchor after it); the ended one's copy is dropped
    # only when g1 can prove that the other received it (an anchor both received lines their positions up), else it is
    # keyed at the end of its stream and the dedup stage joins it by weak key: one event in either read order
    assert {f.event_key for f in f2} <= {k for f in f1 for k in (f.event_key, *f.alt_keys)}
    for frames in (f1 + f2, f2 + f1):
        assert dedup_events(frames) == 1, [(f.gatherer, f.conn, f.event_key, f.weak_key) for f in frames]
