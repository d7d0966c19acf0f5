"""``VenueSim`` serving Polymarket through ``Venue.emulator``: the Gamma keyset route lists the markets, the market
channel on ``/ws/market`` serves the gatherer's real WebSocket client and session, and the venue record holds the
subscriptions (asset ids) and the events a ``drop`` fault kept back. The default venue keeps its native protocol."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from mdpipe.config import SimConfig
from schemas.raw import RawFrame, decode_raw
from venue_sim.app import SimOptions, VenueSim
from venue_sim.faults import FaultSpec
from venue_sim.keys import WS_PATH as NATIVE_WS_PATH
from venue_sim.record import ConnClosed, Subscribed, Suppressed, Unsubscribed, read_record, record_path
from venues.polymarket.discovery import Pager, assets_by_condition
from venues.polymarket.session import PolymarketSession

pytestmark = pytest.mark.integration


async def _until(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def test_sim_serves_the_venue_protocol_discovery_and_record(tmp_path: Path) -> None:
    from ingest.connection import connection_class

    truth = tmp_path / "truth.bin"
    section = SimConfig(port=0, auth=False, markets=5, rate=400.0, seed=5, churn_per_s=0.0, truth_path=str(truth))

    async def body() -> tuple[list[str], list[RawFrame], object]:
        sim = VenueSim(section, SimOptions(), venue="polymarket")
        await sim.start()
        assert sim.ws_url.endswith("/ws/market")
        assert sim.rest_url == f"http://127.0.0.1:{sim.port}"  # the Gamma base: the keyset route is at the root
        pager = Pager("gamma", base_url=sim.rest_url, limit=2)  # 3 pages for 5 markets
        markets = []
        while (url := pager.next_url()) is not None:
            markets += pager.feed(await asyncio.to_thread(_get, url))
        assets = [a for tokens in assets_by_condition(markets).values() for a in tokens]
        frames: list[RawFrame] = []
        dead: list[str] = []
        session = PolymarketSession(
            gatherer="g1", conn_id=1, emit=lambda m, b: frames.append(decode_raw(b)),
            dead=lambda b, r: dead.append(r),
        )  # fmt: skip
        session.add_markets(assets)
        conn = connection_class("websockets")(session, sim.ws_url, dict, backoff_initial=0.05)
        conn.start()
        try:
            await _until(lambda: sum(f.kind == "snapshot" for f in frames) + len(session._held) >= len(assets))
            await asyncio.sleep(0.3)
            assert sim.apply_fault(FaultSpec(kind="drop", count=5)) == 1
            await asyncio.sleep(0.5)
            session.tick(time.time_ns())
        finally:
            await conn.stop()
            await _until(lambda: not sim.server.connections)
            await sim.stop()
        assert dead == []
        return assets, frames, sim

    assets, frames, _sim = asyncio.run(body())
    assert len(assets) == 10  # both tokens of every listed condition
    assert {f.market for f in frames if f.kind == "delta"} <= set(assets)
    assert any(f.kind == "delta" for f in frames)
    records = list(read_record(record_path(str(truth))))
    subs = [r for r in records if isinstance(r, Subscribed)]
    assert subs and all(r.channel == "market" and r.conn == 1 for r in subs)
    # every listed asset is subscribed once, plus once more after each resync (a book_check mismatch, e.g. after the
    # drop fault, unsubscribes the token and subscribes it again: the record holds both)
    subscribed = Counter(a for r in subs for a in r.markets)
    resynced = Counter(
        a for r in records if isinstance(r, Unsubscribed) and r.reason == "unsubscribe" for a in r.markets
    )
    assert set(subscribed) == set(assets)
    assert all(subscribed[a] == 1 + resynced[a] for a in assets), (subscribed, resynced)
    kept = [i for r in records if isinstance(r, Suppressed) and r.reason == "drop" for i in r.ids]
    # 5 dropped messages: a trade's two last_trade_price messages are one event, so 3 to 5 distinct events
    assert 3 <= len(kept) <= 5 and kept == sorted(set(kept))
    closed = [r for r in records if isinstance(r, Unsubscribed) and r.reason == "closed"]
    assert len(closed) == 1 and any(isinstance(r, ConnClosed) for r in records)


def test_default_venue_is_served_through_its_own_profile() -> None:
    sim = VenueSim(SimConfig(port=0, auth=False, markets=2), SimOptions())
    assert sim.profile is not None and sim.rest_url.endswith("/trade-api/v2")
    assert sim.server.ws_path == NATIVE_WS_PATH and sim.server.session_factory is sim.profile.session_factory
