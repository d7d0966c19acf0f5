"""Which markets a gatherer holds, against the real emulator and broker: lifecycle messages of every form, REST
listings that lag the WebSocket, paused markets, listings that fail half-way.

The emulator's REST status of a market is its ``MarketTable.status`` byte: tests set it directly to play a REST
API that lags (or leads) the lifecycle messages, which they publish through the emulator like any venue event.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mdpipe.config import SimConfig
from schemas.markets import decode_market
from tests.venues.kalshi.dedup_events import dedup_events
from venue_sim.app import VenueSim
from venue_sim.markets import ST_ACTIVE, ST_CLOSED, ST_INACTIVE
from venue_sim.truth import read_truth
from venues.kalshi.emulator_wire import CH_LIFECYCLE

pytestmark = pytest.mark.integration


def _sim(tmp_path: Path, **kw: Any) -> VenueSim:
    settings: dict[str, Any] = {"markets": 10, "rate": 300.0, "seed": 5, "churn_per_s": 0.0, **kw}
    return VenueSim(SimConfig(port=0, auth=False, truth_path=str(tmp_path / "truth.bin"), **settings))


def _lifecycle(sim: VenueSim, ticker: str, **fields: Any) -> None:
    """Publish one ``market_lifecycle_v2`` message for ``ticker`` (also written to the truth file)."""
    index = sim.markets.index(ticker)
    assert index is not None
    body = json.dumps({"market_ticker": ticker, **fields}, separators=(",", ":"))
    out: list[Any] = []
    sim.generator._event(out, CH_LIFECYCLE, index, sim.generator.now_ms(), body)
    sim._publish(out)


def _new_market(sim: VenueSim) -> tuple[int, str]:
    """A market the venue just added: REST lists it as ``initialized``, no lifecycle message yet."""
    index = sim.markets.add(sim.generator.now_ms())
    sim.books.grow(len(sim.markets))
    sim.generator._has_delta.append(0)
    sim.generator._created.append(index)  # the load generator trades it once it is active (as create_market does)
    return index, sim.markets.ticker(index)


async def _ready(g: Any, ih: Any, count: int) -> None:
    await ih.wait_for(lambda: len(g.plan.conn_of) == count and all(c.up for c in g.connections), 20, "subscribed")
    # the lifecycle subscription too: a market settled before it is confirmed never reaches the gatherer
    await ih.wait_for(lambda: ih.confirmed(g), 20, "subscriptions confirmed")


async def _held_throughout(g: Any, tickers: list[str], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        gone = [t for t in tickers if t not in g.plan.conn_of]
        assert not gone, f"{what}: released {gone}"
        await asyncio.sleep(0.02)


def _live(
    ih: Any,
    sim: VenueSim,
    bootstrap: str,
    tmp_path: Path,
    topics: Any,
    interval: float,
    body: Callable[[Any], Awaitable[None]],
) -> None:
    """Start the emulator, run a gatherer (discovery every ``interval`` s) while ``body(gatherer)`` runs, stop both."""

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(bootstrap, sim, tmp_path / "spool", topics=topics, discovery_interval_s=interval)
        try:
            await ih.run_with(g, lambda: body(g))
        finally:
            await sim.stop()

    asyncio.run(scenario())


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _missing_after(truth: Path, frames: list[Any], ih: Any, market: str, after_ns: int) -> list[Any]:
    have = collections.Counter(ih.body_of(f) for f in frames if f.market == market and f.kind != "gap")
    missing = []
    for ev in read_truth(truth):
        if ev.market != market or ev.gen_ns <= after_ns:
            continue
        if have[ev.msg] > 0:
            have[ev.msg] -= 1
        else:
            missing.append(ev)
    return missing


def test_metadata_and_unknown_lifecycle_messages_keep_the_market(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any, caplog: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, Any] = {}
    unknown = "trading_halted_for_review"  # a type this gatherer does not know
    before = _sample("mdpipe_gather_lifecycle_unknown_total", gatherer="g1", type=unknown)

    async def body(g: Any) -> None:
        await _ready(g, ih, 10)
        t = marks["market"] = sim.markets.ticker(3)
        marks["from"] = time.time_ns()
        for fields in (
            {"additional_metadata": {"title": "Renamed market"}},  # the metadata form: no event_type
            {"event_type": "metadata_updated", "additional_metadata": {"rules_secondary": "new rules"}},
            {"event_type": "close_date_updated", "close_ts": 1_900_000_000},
            {"event_type": "price_level_structure_updated", "price_level_structure": "deci_cent"},
            {"event_type": unknown, "reason": "review"},
            {"event_type": unknown, "reason": "review again"},
        ):
            _lifecycle(sim, t, **fields)
        # the refresh after the messages (1 s) and several discovery passes (0.5 s) happen in here
        await _held_throughout(g, [t], 3.0, "after metadata/unknown lifecycle messages")
        await sim.stop_generating()
        await asyncio.sleep(0.5)

    with caplog.at_level(logging.WARNING, logger="ingest.gatherer"):
        _live(ih, sim, kafka_bootstrap, tmp_path, topics, 0.5, body)
    t = marks["market"]
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    # every message recorded (by one subscription or both: without an anchor neither can tell that the other has
    # it), and the dedup stage makes one event of each
    mine = [f for f in frames if f.market == t and f.kind == "lifecycle"]
    assert len({ih.body_of(f) for f in mine}) == 6, "every message stored"
    assert dedup_events(mine) == 6
    assert not _missing_after(tmp_path / "truth.bin", frames, ih, t, marks["from"]), "its data kept coming"
    assert _sample("mdpipe_gather_lifecycle_unknown_total", gatherer="g1", type=unknown) - before == 2
    logged = [r for r in caplog.records if r.getMessage() == "lifecycle_unknown_type"]
    assert len(logged) == 1, "logged once per type"


def test_a_created_market_is_held_from_creation(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, Any] = {}

    async def body(g: Any) -> None:
        await _ready(g, ih, 10)
        index, new = _new_market(sim)
        marks["market"] = new
        _lifecycle(sim, new, event_type="created", open_ts=int(time.time()), close_ts=1_900_000_000)
        await ih.wait_for(lambda: new in g.plan.conn_of, 5, "the created market subscribed before activation")
        await _ready(g, ih, 11)
        marks["active"] = time.time_ns()
        sim.markets.status[index] = ST_ACTIVE
        _lifecycle(sim, new, event_type="activated", is_deactivated=False)
        await _held_throughout(g, [new], 2.0, "after activation")
        await sim.stop_generating()
        await asyncio.sleep(0.5)

    _live(ih, sim, kafka_bootstrap, tmp_path, topics, 0.5, body)
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    new = marks["market"]
    data = [f for f in frames if f.market == new and f.kind in ("delta", "trade", "ticker")]
    assert data, "the market traded after activation"
    assert not _missing_after(tmp_path / "truth.bin", frames, ih, new, 0), "nothing missed from activation on"


def test_activation_is_not_undone_by_a_lagging_rest_listing(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, Any] = {}

    async def body(g: Any) -> None:
        await _ready(g, ih, 10)
        index, new = _new_market(sim)
        marks["market"] = new
        _lifecycle(sim, new, event_type="created", open_ts=int(time.time()), close_ts=1_900_000_000)
        _lifecycle(sim, new, event_type="activated", is_deactivated=False)
        # REST lists the new market as soon as it exists, so a discovery pass may apply it (as "initialized", which
        # is what REST said at its request) before the gatherer has read the lifecycle messages. What matters is
        # every REST view applied AFTER the activation: REST still says "initialized" (listings lag the WebSocket)
        # through a refresh and discovery passes, and the activation must stand.
        await ih.wait_for(lambda: (g.registry.last_change(new) or (0, ""))[1] == "active", 5, "activation applied")
        await ih.wait_for(lambda: new in g.plan.conn_of, 5, "the activated market subscribed")
        await _held_throughout(g, [new], 4.0, "REST still initialized after activation")
        marks["rest_caught_up"] = time.time_ns()
        sim.markets.status[index] = ST_ACTIVE  # REST catches up; the venue trades it
        await _held_throughout(g, [new], 1.5, "after REST caught up")
        await sim.stop_generating()
        await asyncio.sleep(0.5)

    _live(ih, sim, kafka_bootstrap, tmp_path, topics, 0.5, body)
    new = marks["market"]
    refs = [decode_market(v) for _, v in ih.read_topic(kafka_bootstrap, topics["markets"])]
    refs = [r for r in refs if r.ticker == new]
    # in publication order (one ticker: one partition): a listing applied before the activation may publish
    # "initialized" first; from the first "active" reference on, none published before REST caught up may undo it
    stale = [r for r in refs if r.updated_ns < marks["rest_caught_up"]]
    first_active = next((i for i, r in enumerate(stale) if r.status == "active"), None)
    assert first_active is not None, "the lifecycle status was published before REST caught up"
    assert all(r.status == "active" for r in stale[first_active:]), "a stale REST listing undid the activation"
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    assert not _missing_after(tmp_path / "truth.bin", frames, ih, new, 0)
    assert [f for f in frames if f.market == new and f.kind == "delta"]


def test_a_paused_market_stays_held_through_discovery(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, Any] = {}

    async def body(g: Any) -> None:
        await _ready(g, ih, 10)
        await asyncio.sleep(0.2)
        marks["ready"] = time.time_ns()
        paused_ws, paused_rest = sim.markets.ticker(2), sim.markets.ticker(5)
        marks["markets"] = (paused_ws, paused_rest)
        # one paused over the WebSocket (REST follows), one paused as far as REST knows only (this gatherer
        # missed the message, e.g. it started later)
        sim.markets.status[2] = ST_INACTIVE
        _lifecycle(sim, paused_ws, event_type="deactivated", is_deactivated=True)
        sim.markets.status[5] = ST_INACTIVE
        passes = g.discoveries
        deadline = time.monotonic() + 15
        while g.discoveries < passes + 4:
            assert time.monotonic() < deadline, "discovery passes"
            await _held_throughout(g, [paused_ws, paused_rest], 0.2, "paused")
        # both resume
        marks["resumed"] = time.time_ns()
        sim.markets.status[2] = ST_ACTIVE
        _lifecycle(sim, paused_ws, event_type="activated", is_deactivated=False)
        sim.markets.status[5] = ST_ACTIVE
        await _held_throughout(g, [paused_ws, paused_rest], 1.5, "resumed")
        await sim.stop_generating()
        await asyncio.sleep(0.5)

    _live(ih, sim, kafka_bootstrap, tmp_path, topics, 0.3, body)
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    for market in marks["markets"]:
        assert [f for f in frames if f.market == market and f.kind == "delta" and f.recv_ns > marks["resumed"]]
        assert not _missing_after(tmp_path / "truth.bin", frames, ih, market, marks["ready"])


def test_settled_and_closed_markets_are_released(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)

    async def body(g: Any) -> None:
        await _ready(g, ih, 10)
        settled, closed = sim.markets.ticker(1), sim.markets.ticker(4)
        sim.settle_market(settled)  # determined + settled over the WebSocket
        await ih.wait_for(lambda: settled not in g.plan.conn_of, 5, "released on determined")
        sim.markets.status[4] = ST_CLOSED  # closed at its close time: no WebSocket event, REST only
        await ih.wait_for(lambda: closed not in g.plan.conn_of, 10, "released after a look-up")
        assert len(g.plan.conn_of) == 8
        passes = g.discoveries
        await ih.wait_for(lambda: g.discoveries >= passes + 3, 10, "more passes")
        assert settled not in g.plan.conn_of and closed not in g.plan.conn_of, "a stale listing re-added none"

    _live(ih, sim, kafka_bootstrap, tmp_path, topics, 0.3, body)


def test_a_listing_that_fails_half_way_releases_nothing(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)

    async def scenario() -> None:
        await sim.start()
        proxy = ih.RestProxy(sim.rest_url)
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            rest_url=proxy.url,
            discovery_interval_s=0.3,
            discovery_page=4,
        )

        async def body() -> None:
            await _ready(g, ih, 10)
            # later pages of the open listing fail; meanwhile two markets close (REST only)
            proxy.fault = lambda path: "error" if "status=open" in path and "cursor=" in path else None
            failures = g.discovery_failures
            sim.markets.status[8] = ST_CLOSED
            sim.markets.status[9] = ST_CLOSED
            deadline = time.monotonic() + 15
            while g.discovery_failures < failures + 3:
                assert time.monotonic() < deadline, "failing passes"
                await _held_throughout(g, [sim.markets.ticker(i) for i in range(10)], 0.2, "incomplete listing")
            proxy.fault = lambda path: None
            await ih.wait_for(lambda: len(g.plan.conn_of) == 8, 10, "released once a pass completes")

        try:
            await ih.run_with(g, body)
        finally:
            proxy.close()
            await sim.stop()

    asyncio.run(scenario())
