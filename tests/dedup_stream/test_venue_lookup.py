"""Dedup normalises each winning frame by the venue the frame names (``frame.venue``), never a fixed venue."""

from __future__ import annotations

from typing import Any

import pytest

import dedup_stream.normalise as normalise
import venues
from dedup_stream.logic import Deduper, MemoryStore, Origin
from schemas import RawFrame, Trade, encode_raw


def frame(venue: str, market: str = "M-1") -> RawFrame:
    return RawFrame(
        venue=venue, gatherer="g1", conn=1, sid=1, seq=1, recv_ns=1_767_225_600_000_000_000, kind="trade",
        market=market, event_key="t:abc", payload=b'{"type":"trade","sid":1,"seq":1,"msg":{}}',
    )  # fmt: skip


def decide(f: RawFrame) -> Any:
    decision = Deduper(MemoryStore()).decide(encode_raw(f), Origin("raw.g1", 0, 0))
    assert decision.emit
    return decision


def test_a_frame_of_an_unknown_venue_is_refused_for_the_dead_letter_topic() -> None:
    with pytest.raises(venues.UnknownVenue, match="'nowhere'"):
        normalise.decision_event(decide(frame("nowhere")))


def test_the_frame_venue_chooses_the_normaliser(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class Toy:
        def normaliser(self) -> Any:
            def to_event(f: RawFrame) -> Trade:
                seen.append(f.venue)
                return Trade(
                    venue=f.venue, market=f.market, event_key=f.event_key, ts_ms=1, recv_ns=f.recv_ns,
                    gatherer=f.gatherer, trade_id="x", yes_price=0, no_price=0, count=0,  # type: ignore[arg-type]
                )  # fmt: skip

            return to_event

    asked: list[str] = []

    def get_venue(name: str) -> Any:
        asked.append(name)
        return Toy()

    monkeypatch.setattr(normalise, "get_venue", get_venue)
    monkeypatch.setattr(normalise, "_normalisers", {})
    event = normalise.decision_event(decide(frame("toy")), raw_ts_ms=5)
    normalise.decision_event(decide(frame("toy", "M-2")))
    assert isinstance(event, Trade) and event.venue == "toy" and event.raw_ts_ms == 5
    assert seen == ["toy", "toy"] and asked == ["toy"]  # looked up once per venue, then kept
