"""The dedup stage's synthetic frames (:mod:`dedup_stream.synth`) are any venue's: events from the venue's synthetic
data (``Venue.synth``), each gatherer's copy a message in the envelope of the event's own venue."""

from __future__ import annotations

from typing import Any

import pytest

import venues
from dedup_stream.synth import gatherer_copies, pipeline_events, produce_frames, venue_events
from venues.interface import Venue


def _with_synthetic_data() -> list[str]:
    names = []
    for name in venues.names():
        try:
            venues.get_venue(name).synth()
        except NotImplementedError:
            continue
        names.append(name)
    return names


WITH_SYNTH = _with_synthetic_data()


def test_the_default_venue_has_synthetic_data() -> None:
    """The stages' tests and benchmarks draw the default venue's frames."""
    assert venues.default_name() in WITH_SYNTH
    assert venue_events(3)[0].venue == pipeline_events(3)[0].venue == venues.default_name()


@pytest.mark.parametrize("name", WITH_SYNTH)
def test_copies_are_messages_of_their_venue_that_it_normalises(name: str) -> None:
    synth = venues.get_venue(name).synth()
    normalise = venues.get_venue(name).normaliser()
    events = venue_events(300, markets=5, seed=2, venue=name) + pipeline_events(700, markets=5, seed=2, venue=name)
    assert {ev.venue for ev in events} == {name}
    for gatherer in ("g1", "g2"):
        frames = gatherer_copies(events, gatherer, seed=3)
        assert [f.seq for f in frames] == list(range(1, len(events) + 1))  # one connection's numbering
        for ev, frame in zip(events, frames, strict=True):
            assert (frame.venue, frame.gatherer, frame.market, frame.kind) == (name, gatherer, ev.market, ev.kind)
            assert (frame.event_key, frame.venue_ms) == (ev.event_key, ev.venue_ms)
            assert frame.payload == synth.payload(ev.msg_type, frame.seq, ev.msg)
            assert normalise(frame).event_key == ev.event_key  # a message the venue's dedup normaliser takes


def test_a_venue_without_synthetic_data_says_which() -> None:
    venue = venues.get_venue(venues.default_name())
    with pytest.raises(NotImplementedError, match=venue.name):
        Venue.synth(venue)  # the interface's default: a venue that provides none


def test_produce_frames_raises_when_a_frame_is_not_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that feeds raw topics must not go on with frames the broker never stored (a failed record, or a
    success report without an offset: librdkafka's implicit ack); flush() alone counts both as done."""
    import confluent_kafka

    class Report:
        def __init__(self, offset: int | None) -> None:
            self._offset = offset

        def offset(self) -> int | None:
            return self._offset

    class FakeProducer:
        def __init__(self, conf: dict[str, Any]) -> None:
            self.cb, self.pending = conf.get("on_delivery"), 0

        def produce(self, topic: str, value: bytes, key: bytes, timestamp: int) -> None:
            self.pending += 1

        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            for i in range(self.pending):
                if self.cb is not None:
                    self.cb(None, Report(None if i == 1 else i))
            self.pending = 0
            return 0

    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    frames = gatherer_copies(venue_events(3, markets=1, seed=1), "g1")
    with pytest.raises(RuntimeError, match="not stored"):
        produce_frames({"bootstrap.servers": "127.0.0.1:9"}, "raw.g1", frames)
