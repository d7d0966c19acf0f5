"""Polymarket behind the venue wing's interface (venues/interface.py, merged from the wing's branch; skipped until
then): the registry's ``VENUE`` builds a working session from the keyword arguments every stage passes, normalises
frames, and needs no authentication."""

from __future__ import annotations

import json

import pytest

from schemas.raw import RawFrame, decode_raw

interface = pytest.importorskip("venues.interface")


def test_the_venue_object_drives_the_polymarket_pieces() -> None:
    from venues.polymarket import VENUE

    assert isinstance(VENUE, interface.Venue) and VENUE.name == "polymarket" and VENUE.channels == ("market",)
    frames: list[RawFrame] = []
    session = VENUE.session(
        gatherer="g1", conn_id=3, channels=["market"], sub_cap=2, keyer=VENUE.keyer(60_000),
        emit=lambda m, b: frames.append(decode_raw(b)), dead=lambda b, r: None, lifecycle=False, on_lifecycle=None,
        log=None, stats=VENUE.session_stats(), snapshot_hold_s=0.5, anchor_hold_s=10.0, lifecycle_covered=None,
        lifecycle_seen=None,
    )  # fmt: skip
    session.add_markets(["a", "b", "c"])
    assert list(session.markets) == ["a", "b"]  # sub_cap is the asset cap
    session.connected(0)
    assert json.loads(session.data_to_send()[0])["assets_ids"] == ["a", "b"]
    trade = {"event_type": "last_trade_price", "asset_id": "a", "market": "0xc", "price": "0.5", "size": "3",
             "side": "BUY", "timestamp": "5"}  # fmt: skip
    session.receive(json.dumps(trade).encode(), 1)
    event = VENUE.normaliser()(frames[0])
    assert event.venue == "polymarket" and event.market == "a" and event.ts_ms == 5
    assert VENUE.signer("", "", "").headers() == {}
    assert VENUE.truth_normaliser()(
        "trade", frames[0].payload, market="a", event_key="k", recv_ns=1, gatherer="g", envelope_type=""
    ).ts_ms == 5  # fmt: skip
    assert VENUE.emulator_wire().__name__ == "venues.polymarket.emulator"
