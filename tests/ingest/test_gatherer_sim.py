"""Gatherer against the real emulator (venue_sim) and the real broker: sharding, discovery, gaps, recovery, dlq; over
TLS (``wss://`` and ``https://``, the emulator's generated CA trusted through ``ca_file``) with both WebSocket clients,
and a wrong CA refused with one clear log line."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mdpipe.config import SimConfig
from schemas.dlq import decode_dead_letter
from schemas.markets import decode_market
from venue_sim.app import SimOptions, VenueSim
from venue_sim.tls import make_certificates
from venue_sim.truth import read_truth

pytestmark = pytest.mark.integration


def _sim(tmp_path: Path, tls: bool = False, **kw: Any) -> VenueSim:
    settings: dict[str, Any] = {"markets": 40, "rate": 400.0, "seed": 7, "churn_per_s": 0.0, **kw}
    section = SimConfig(port=0, auth=False, truth_path=str(tmp_path / "truth.bin"), **settings)
    return VenueSim(section, SimOptions(tls=tls))


def _missing(
    truth_path: Path, frames: list[Any], ih: Any, after_ns: int = 0, skip: frozenset[str] = frozenset()
) -> list[Any]:
    """Truth events (generated after ``after_ns``) with no frame carrying the same body for the same market."""
    have = collections.Counter((f.market, ih.body_of(f)) for f in frames if f.kind != "gap")
    missing = []
    for ev in read_truth(truth_path):
        if ev.gen_ns <= after_ns or ev.market in skip:
            continue
        key = (ev.market, ev.msg)
        if have[key] > 0:
            have[key] -= 1
        else:
            missing.append(ev)
    return missing


@pytest.mark.parametrize(("client", "scheme"), [("picows", "ws"), ("picows", "wss"), ("websockets", "wss")])
def test_all_markets_over_several_connections_and_new_markets(
    client: str, scheme: str, tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, sub_cap=4, tls=scheme == "wss")
    marks: dict[str, Any] = {}

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            per_connection=10,
            per_subscription=8,
            discovery_interval_s=1.0,
            ws_client=client,
            ca_file=sim.ca_file,
        )
        assert g.venue_config.ws_url.startswith(f"{scheme}://")
        assert g.venue_config.rest_url.startswith("https://" if scheme == "wss" else "http://")

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 40 and all(c.up for c in g.connections), 20, "subscribe")
            await ih.wait_for(
                lambda: all(not grp.pending for c in g.connections for grp in c.session.groups),
                20,
                "subscriptions confirmed",
            )
            await asyncio.sleep(0.2)
            marks["ready"] = time.time_ns()
            new = marks["new"] = sim.create_market()
            await ih.wait_for(lambda: new in g.plan.conn_of, 15, "new market picked up")
            await asyncio.sleep(1.0)
            await sim.stop_generating()
            await asyncio.sleep(1.0)

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        assert g.discoveries >= 2 and g.discovery_failures == 0, "discovery over REST (https with TLS) works"
        assert len(g.connections) >= 4
        # error 26 (cap 4 < 8) halved the groups: every group is within the venue's cap
        assert all(len(grp.markets) <= 4 for c in g.connections for grp in c.session.groups)
        assert g.stats.errors > 0

    asyncio.run(scenario())
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    assert {f.kind for f in frames} >= {"snapshot", "delta", "trade", "ticker"}
    assert len({f.conn for f in frames}) >= 4
    seqd = [(f.conn, f.sid, f.seq) for f in frames if f.seq is not None and f.kind != "gap"]
    assert len(seqd) == len(set(seqd)), "each message recorded once"
    deltas = collections.Counter((f.market, ih.body_of(f)) for f in frames if f.kind in ("delta", "trade"))
    truth_counts = collections.Counter((ev.market, ev.msg) for ev in read_truth(tmp_path / "truth.bin"))
    assert all(n <= truth_counts[k] for k, n in deltas.items()), "no market subscribed twice"
    assert not _missing(tmp_path / "truth.bin", frames, ih, marks["ready"], frozenset([marks["new"]]))
    snap_markets = {f.market for f in frames if f.kind == "snapshot"}
    assert len(snap_markets) == 41
    refs = [decode_market(v) for _, v in ih.read_topic(kafka_bootstrap, topics["markets"])]
    assert len({r.ticker for r in refs}) >= 40


def test_dropped_message_resnapshots_only_that_sid(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, rate=300.0)

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap, sim, tmp_path / "spool", topics=topics, per_connection=20, per_subscription=10
        )

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 40 and all(c.up for c in g.connections), 20, "subscribe")
            await ih.wait_for(
                lambda: all(not grp.pending for c in g.connections for grp in c.session.groups),
                20,
                "subscriptions confirmed",
            )
            await asyncio.sleep(0.5)
            for _ in range(20):  # until a dropped message was an orderbook one (trades have no snapshot)
                gaps = g.stats.gaps
                sim.faults.drop_next(conn_id=1)
                await ih.wait_for(lambda gaps=gaps: g.stats.gaps > gaps, 15, "gap detected")
                if g.stats.resnapshots:
                    break
            chans = [{sid: ch for sid, (_, ch) in c.session._sid_group.items()} for c in g.connections]
            seqs = [c.session._seq for c in g.connections]
            why = (g.stats.gaps, g.stats.errors, g.stats.resubscribes, chans, seqs)
            assert g.stats.resnapshots == 1, why
            await asyncio.sleep(1.0)
            await sim.stop_generating()

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())
    frames = ih.read_frames(kafka_bootstrap, topics["raw"])
    gaps = [f for f in frames if f.kind == "gap"]
    assert gaps, "a gap frame is recorded"

    first_gap_ns = gaps[0].recv_ns
    later = [f for f in frames if f.kind == "snapshot" and f.recv_ns > first_gap_ns]
    assert later, "get_snapshot answered"
    # The resnapshot covers the markets of ONE sid on ONE connection, and that sid had a gap.
    conn, sid = later[0].conn, later[0].sid
    assert {(f.conn, f.sid) for f in later} == {(conn, sid)}
    gap = next(json.loads(f.payload) for f in gaps if f.sid == sid and f.conn == conn)
    assert gap["received"] > gap["expected"] and gap["conn"] == conn and gap["sid"] == sid
    sid_markets = {f.market for f in frames if f.sid == sid and f.conn == conn}
    assert {f.market for f in later} == {
        f.market
        for f in frames
        if f.kind == "snapshot" and f.sid == sid and f.conn == conn and f.recv_ns < first_gap_ns
    }
    assert {f.market for f in later} <= sid_markets
    assert len({f.market for f in later}) < 40


@pytest.mark.parametrize(
    ("fault", "client", "scheme"),
    [
        ("close", "picows", "ws"),
        ("close", "websockets", "ws"),
        ("freeze", "picows", "ws"),
        ("freeze", "websockets", "ws"),
        # over TLS: a new handshake per reconnect, and the watchdog aborting a TLS transport
        ("close", "websockets", "wss"),
        ("freeze", "picows", "wss"),
    ],
)
def test_disconnect_and_frozen_connection_recover(
    fault: str, client: str, scheme: str, tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, markets=20, rate=400.0, tls=scheme == "wss")

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            per_connection=10,
            silence_timeout_s=1.0,
            ws_client=client,
            ca_file=sim.ca_file,
        )
        assert g.venue_config.ws_url.startswith(f"{scheme}://")

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 20 and all(c.up for c in g.connections), 20, "subscribe")
            await asyncio.sleep(1.0)
            before = {c.session.conn_id: c.reconnects for c in g.connections}
            if fault == "close":
                sim.faults.close_connections()
            else:
                sim.faults.freeze(30.0)
            await ih.wait_for(
                lambda: all(c.reconnects > before[c.session.conn_id] for c in g.connections), 20, "reconnect"
            )
            await ih.wait_for(lambda: all(c.up for c in g.connections), 20, "connections back")
            mark = g.stats.by_kind["delta"]
            await ih.wait_for(lambda: g.stats.by_kind["delta"] > mark + 50, 20, "data flows again")

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())


def test_malformed_frames_go_to_dlq(tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, markets=10, rate=100.0)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "spool", topics=topics)

        async def body() -> None:
            await ih.wait_for(lambda: g.connections and g.connections[0].up and g.plan.conn_of, 20, "subscribe")
            sim.faults.malformed()
            await ih.wait_for(lambda: g.stats.dead >= 1, 10, "dead letter")

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    letters = [decode_dead_letter(v) for _, v in ih.read_topic(kafka_bootstrap, topics["dlq"])]
    assert len(letters) == g.stats.dead >= 1
    assert letters[0].stage == "gather:g1" and letters[0].payload


def test_discovery_failure_backs_off_and_keeps_subscriptions(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, markets=10, rate=200.0)

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "spool", topics=topics, discovery_interval_s=0.2)

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 10 and g.connections[0].up, 20, "subscribe")
            g.venue_config = msgspec.structs.replace(
                g.venue_config, rest_url=sim.rest_url.replace("/trade-api/v2", "/nope")
            )  # now 404
            await ih.wait_for(lambda: g.discovery_failures >= 2, 20, "failed discoveries")
            mark = g.stats.by_kind["delta"]
            await ih.wait_for(lambda: g.stats.by_kind["delta"] > mark + 20, 20, "data keeps flowing")
            assert len(g.plan.conn_of) == 10 and all(c.reconnects == 0 for c in g.connections)

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("client", ["picows", "websockets"])
def test_a_venue_certificate_from_another_ca_is_refused_with_one_clear_line(
    client: str, tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any, caplog: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, markets=10, rate=100.0, tls=True)
    wrong = make_certificates(tmp_path / "other-ca")

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            discovery_interval_s=0.2,
            ws_client=client,
            ca_file=wrong.ca_file,
        )
        g.add_markets([sim.markets.ticker(i) for i in range(10)])  # so that connections try without discovery

        async def body() -> None:
            await ih.wait_for(
                lambda: sum(c.reconnects for c in g.connections) >= 4 and g.discovery_failures >= 3, 20, "retries"
            )
            assert not any(c.up for c in g.connections) and g.stats.by_kind["delta"] == 0

        try:
            with caplog.at_level(logging.INFO):
                await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    assert g.failure is None, "an untrusted venue is retried like any connection failure"
    assert sim.stats()["accepted"] == 0, "no WebSocket got past the TLS handshake"
    lines = [r for r in caplog.records if r.getMessage() == "venue_tls_untrusted"]
    assert len(lines) == 1, [r.__dict__.get("kv") for r in lines]
    kv = lines[0].kv  # type: ignore[attr-defined]
    assert lines[0].levelno == logging.ERROR
    assert kv["ca_file"] == wrong.ca_file and kv["venue"] == f"127.0.0.1:{sim.port}"
    assert "certificate" in kv["error"] and "venue.ca_file" in kv["hint"]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    reasons = [r.kv.get("reason", "") for r in caplog.records if r.getMessage() == "ws_reconnecting"]  # type: ignore[attr-defined]
    assert reasons and all(r.startswith("tls: venue certificate not trusted") for r in reasons)
