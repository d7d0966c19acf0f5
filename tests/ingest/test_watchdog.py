"""Silence watchdog rule: reconnect a silent connection only while its markets are expected to be active."""

from __future__ import annotations

from types import SimpleNamespace

from ingest.gatherer import Gatherer, GathererOptions

S = 1_000_000_000


def _gatherer() -> Gatherer:
    opts = GathererOptions(
        gatherer_id="g1", rest_url="http://x", ws_url="ws://x", channels=["orderbook_delta"], markets_per_connection=1
    )
    g = Gatherer(opts, SimpleNamespace(send=lambda *a: None))  # type: ignore[arg-type]
    g.add_markets(["A", "B"])
    for c in g.connections:
        c.up = True
    return g


def test_silent_while_a_sibling_connection_gets_data() -> None:
    g = _gatherer()
    a, b = g.connections
    now = 1000 * S
    b.session.last_data_ns = now - 1 * S
    assert g._expects_data(a, now, 30 * S)
    b.up = False
    assert not g._expects_data(a, now, 30 * S)


def test_silent_after_a_busy_history() -> None:
    g = _gatherer()
    a, _ = g.connections
    now = 1000 * S
    a.session.first_data_ns, a.session.last_data_ns, a.session.data_messages = now - 100 * S, now - 40 * S, 5000
    assert g._expects_data(a, now, 30 * S)


def test_quiet_markets_are_left_alone() -> None:
    g = _gatherer()
    a, _ = g.connections
    now = 1000 * S
    a.session.first_data_ns, a.session.last_data_ns, a.session.data_messages = now - 500 * S, now - 40 * S, 3
    assert not g._expects_data(a, now, 30 * S)
