"""The gatherer on Polymarket against the real emulator (``VenueSim`` serving the venue) and the real broker:
discovery through ``Venue.discovery`` (the Gamma keyset walk over the paced REST client), both tokens of a condition
on one connection and at most the per-connection cap, sessions ticked by the watchdog; the books rebuilt (replace
semantics) from the frames in the raw topic equal the emulator's, for every token; every token's reference data is
published to the markets topic once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.gatherer import Gatherer
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import GatherConfig, KafkaConfig, SimConfig, VenueConfig
from mdpipe.kafka import producer_config
from schemas.events import BookDelta, BookSnapshot
from schemas.markets import decode_market
from schemas.raw import RawFrame
from sink.book import DeltaRow, SnapshotRow
from tests.ingest.conftest import read_frames, read_topic, run_with, wait_for
from venue_sim.app import SimOptions, VenueSim
from venues.polymarket.book import book_at
from venues.polymarket.emulator import Profile
from venues.polymarket.normalise import to_event

pytestmark = pytest.mark.integration

MARKETS = 7
PER_CONNECTION = 5  # odd: a condition's second token must not spill onto the next connection


def rebuilt(frames: list[RawFrame], asset: str) -> tuple[Any, Any]:
    snaps, deltas = [], []
    for f in frames:
        if f.market == asset and f.kind in ("snapshot", "delta"):
            e = to_event(f)
            if isinstance(e, BookSnapshot):
                snaps.append(SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys)))
            elif isinstance(e, BookDelta):
                deltas.append(DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta))
    book = book_at(snaps, deltas, 1 << 62)
    assert book is not None, asset
    return book.normalised()


def truth(sim: VenueSim, m: int) -> tuple[Any, Any]:
    view = sim.books.peek(m)
    c = Decimal("0.01")
    yes = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.yes.items()))
    no = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.no.items()))
    return yes, no


def test_gatherer_discovers_and_captures_the_venue(tmp_path: Path, kafka_bootstrap: str, make_topics: Any) -> None:
    raw, dlq, markets_topic = make_topics(3)
    section = SimConfig(port=0, auth=False, markets=MARKETS, rate=400.0, seed=11, churn_per_s=0.0)
    sim = VenueSim(section, SimOptions(), venue="polymarket")

    async def scenario() -> Gatherer:
        await sim.start()
        venue = VenueConfig(name="polymarket", rest_url=sim.rest_url, ws_url=sim.ws_url, auth=False)
        gather = GatherConfig(
            markets_per_connection=PER_CONNECTION,
            discovery_interval_s=1.0,
            backoff_initial_s=0.1,
            backoff_max_s=1.0,
            ws_client="websockets",
        )
        conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), linger_ms=5)
        producer = RawProducer(conf, Spool(tmp_path / "spool", 1 << 30), warm_topics={raw: 6})  # make_topics: 6
        g = Gatherer(
            gather, venue, producer, gatherer_id="g1", raw_topic=raw, dlq_topic=dlq, markets_topic=markets_topic,
            discovery_page=3,
        )  # fmt: skip

        async def body() -> None:
            await wait_for(lambda: len(g.plan.conn_of) == 2 * MARKETS and all(c.up for c in g.connections), 20, "held")
            await wait_for(lambda: g.discoveries >= 2, 10, "a second discovery pass")
            await asyncio.sleep(1.5)
            await sim.stop_generating()
            await asyncio.sleep(1.5)  # the last messages and held books reach the session

        try:
            await run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    ids = Profile(section.seed, sim.markets.ticker)  # the profile's token ids are a function of seed and ticker
    assert g.discovery_failures == 0 and g.failure is None
    assert max(g.plan.sizes) <= PER_CONNECTION and len(g.connections) == 4  # 14 tokens, pairs kept whole: 4+4+4+2
    for m in range(MARKETS):
        _, yes_token, no_token = ids.ids(m)
        assert g.plan.conn_of[yes_token] == g.plan.conn_of[no_token], "both tokens of a condition on one connection"
    frames = read_frames(kafka_bootstrap, raw)
    assert {f.kind for f in frames} >= {"snapshot", "delta", "trade"}
    assert not [f for f in frames if f.kind == "gap"]
    for m in range(MARKETS):
        _, yes_token, no_token = ids.ids(m)
        yes, no = truth(sim, m)
        assert rebuilt(frames, yes_token) == (yes, no)
        assert rebuilt(frames, no_token) == (no, yes)
    # reference data: one MarketRef per token, keyed venue:ticker, published once (later passes changed nothing)
    refs = [(key, decode_market(value)) for key, value in read_topic(kafka_bootstrap, markets_topic)]
    tokens = {t for m in range(MARKETS) for t in ids.ids(m)[1:]}
    assert sorted(r.ticker for _, r in refs) == sorted(tokens)
    assert all(key == f"polymarket:{r.ticker}".encode() and r.venue == "polymarket" for key, r in refs)
    assert all(r.status == "active" and r.market_id for _, r in refs)
    for m in range(MARKETS):
        condition, yes_token, no_token = ids.ids(m)
        assert {r.ticker for _, r in refs if r.market_id == condition} == {yes_token, no_token}
