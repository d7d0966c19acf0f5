"""The gatherer's watchdog on Polymarket sessions: it ticks them (the session sends its PINGs), and a session whose
PING went unanswered (``needs_reconnect``) has its connection closed, while an answered one is left alone."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ingest.gatherer import Gatherer
from mdpipe.config import GatherConfig, VenueConfig
from venues.polymarket import wire

S = 1_000_000_000


def _gatherer() -> Gatherer:
    g = Gatherer(
        GatherConfig(markets_per_connection=2),
        VenueConfig(name="polymarket", rest_url="http://x", ws_url="ws://x"),
        SimpleNamespace(send=lambda *a: None, held=[], release=lambda: 0),  # type: ignore[arg-type]
        gatherer_id="g1",
        raw_topic="raw.g1",
        dlq_topic="dlq",
        markets_topic="markets",
    )
    g.add_market_groups([["a-yes", "a-no"], ["b-yes", "b-no"]])
    return g


def test_an_unanswered_ping_closes_only_that_connection(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    g = _gatherer()
    assert [sorted(c.session.markets) for c in g.connections] == [["a-no", "a-yes"], ["b-no", "b-yes"]]
    killed: list[int] = []
    for c in g.connections:
        c.up = True
        c.session.connected(0)
        c.session.data_to_send()

        async def kill(reason: str, c=c) -> None:  # type: ignore[no-untyped-def]
            killed.append(c.session.conn_id)

        monkeypatch.setattr(c, "kill", kill)
    clock = iter([wire.PING_INTERVAL_S * S + 1, (wire.PING_INTERVAL_S + wire.PONG_TIMEOUT_S) * S + 2])
    monkeypatch.setattr("ingest.gatherer.time.time_ns", lambda: next(clock))
    asyncio.run(g._watchdog_step())  # both sessions send their PING
    assert all(wire.PING in c.session.data_to_send() for c in g.connections)
    g.connections[1].session.receive(b"PONG", wire.PING_INTERVAL_S * S + 5)  # only the second is answered
    asyncio.run(g._watchdog_step())
    assert killed == [0]
