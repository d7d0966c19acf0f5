"""Silence watchdog: a connection is judged by its own evidence (a probe of its sids), never by its siblings'."""

from __future__ import annotations

import json
from types import SimpleNamespace

from ingest.gatherer import Gatherer
from mdpipe.config import GatherConfig, VenueConfig

S = 1_000_000_000


def _gatherer() -> Gatherer:
    gather = GatherConfig(
        channels=["orderbook_delta", "trade"], markets_per_connection=1, silence_timeout_s=30.0, probe_timeout_s=10.0
    )
    g = Gatherer(
        gather,
        VenueConfig(rest_url="http://x", ws_url="ws://x"),
        SimpleNamespace(send=lambda *a: None, held=[], release=lambda: 0),  # type: ignore[arg-type]
        gatherer_id="g1",
        raw_topic="raw.g1",
        dlq_topic="dlq",
        markets_topic="markets",
    )
    g.add_markets(["A", "B"])
    for c in g.connections:
        c.up = True
        c.session.connected(0)
        for raw in c.session.data_to_send():
            cmd = json.loads(raw)
            if cmd["cmd"] == "subscribe" and "market_tickers" in cmd["params"]:
                for sid, channel in enumerate(cmd["params"]["channels"], 10 * c.session.conn_id + 1):
                    ack = {"id": cmd["id"], "type": "subscribed", "msg": {"channel": channel, "sid": sid}}
                    c.session.receive(json.dumps(ack).encode(), 1)
            elif cmd["cmd"] == "subscribe":
                ack = {"id": cmd["id"], "type": "subscribed", "msg": {"channel": "market_lifecycle_v2", "sid": 99}}
                c.session.receive(json.dumps(ack).encode(), 1)
    return g


def _reply_to_probe(conn, seq_ahead: int = 0) -> None:  # type: ignore[no-untyped-def]
    s = conn.session
    for raw in s.data_to_send():
        cmd = json.loads(raw)
        sid = cmd["params"].get("sid")
        seq = s._seq.get(sid, 0) + seq_ahead
        s.receive(json.dumps({"id": cmd["id"], "sid": sid, "seq": seq, "type": "ok", "msg": {}}).encode(), 40 * S)


def test_silence_alone_only_asks_a_probe_even_while_siblings_are_busy() -> None:
    g = _gatherer()
    a, b = g.connections
    now = 1000 * S
    b.session.last_rx_ns = b.session.last_data_ns = now - 1 * S  # the sibling is busy: that proves nothing about a
    assert g._silence_verdict(a, now) == "probe"
    assert g._silence_verdict(b, now) == ""


def test_a_probe_answered_in_step_leaves_a_quiet_connection_up() -> None:
    g = _gatherer()
    a, _ = g.connections
    now = 1000 * S
    assert a.session.probe(now)
    assert g._silence_verdict(a, now + 5 * S) == ""  # waiting for the reply
    _reply_to_probe(a)
    assert a.session.probe_state == "quiet"
    assert g._silence_verdict(a, now + 6 * S) == "probe"  # still silent: it is asked again, never torn down


def test_a_probe_reply_ahead_of_the_data_means_frozen() -> None:
    g = _gatherer()
    a, _ = g.connections
    assert a.session.probe(1000 * S)
    _reply_to_probe(a, seq_ahead=7)
    assert g._silence_verdict(a, 1001 * S).startswith("frozen")
    assert a.session.stats.gaps == 2  # each sid (orderbook, trade) reports the seqs withheld from it


def test_an_unanswered_probe_means_a_dead_socket() -> None:
    g = _gatherer()
    a, _ = g.connections
    assert a.session.probe(1000 * S)
    assert g._silence_verdict(a, 1009 * S) == ""
    assert g._silence_verdict(a, 1011 * S).startswith("silent")
