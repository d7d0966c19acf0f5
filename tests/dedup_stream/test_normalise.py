"""What emitting decisions become: a venue event the normalised event of its venue's winning copy, with the hop
stamps it is given; a gap report a Gap record. (A venue's own mapping of its frames through these decisions is
tested with the venue: tests/venues/<name>/.)"""

from __future__ import annotations

from dedup_stream.logic import Deduper, MemoryStore, Origin, Verdict
from dedup_stream.normalise import decision_event
from dedup_stream.synth import gatherer_copies, pipeline_events
from schemas import RawFrame, encode_raw
from schemas.events import Gap
from venues import default_name

T0 = 1_767_225_600_000_000_000
MARKET = "M-1"


def emitted(frame: RawFrame, offset: int = 0) -> object:
    decision = Deduper(MemoryStore()).decide(encode_raw(frame), Origin(f"raw.{frame.gatherer}", 0, offset))
    assert decision.emit
    return decision_event(decision)


def test_a_winning_copy_becomes_an_event_of_its_kind_market_and_key() -> None:
    """The default venue's synthetic frames of every kind the pipeline carries: each decision's event is of the
    frame's kind (its event type's tag), for the frame's venue, market and event key, unstamped; checked without the
    venue's normaliser, which the stage calls (its mapping is tested with the venue: tests/venues/<name>/)."""
    frames = gatherer_copies(pipeline_events(3000, markets=50, seed=11, t0_ns=T0), "g1")
    kinds = set()
    for frame in frames:
        assert frame.venue == default_name()
        event = emitted(frame)
        assert type(event).__struct_config__.tag == frame.kind
        assert (event.venue, event.market, event.event_key) == (frame.venue, frame.market, frame.event_key)
        assert (event.raw_ts_ms, event.dedup_ns) == (0, 0)
        kinds.add(frame.kind)
    assert kinds >= {"snapshot", "delta", "trade", "ticker", "lifecycle"}


def test_gap_decision_becomes_a_gap_record() -> None:
    frame = RawFrame(
        venue=default_name(), gatherer="g3", conn=2, sid=4, seq=13, recv_ns=T0, kind="gap", market=MARKET,
        event_key="", payload=b'{"sid": 4, "expected": 10, "received": 13, "conn": 2}',
    )  # fmt: skip
    decision = Deduper(MemoryStore()).decide(encode_raw(frame), Origin("raw.g3", 0, 0))
    assert decision.verdict is Verdict.GAP
    event = decision_event(decision, 1_767_225_600_001, T0 + 2)
    assert isinstance(event, Gap)
    assert (event.kind, event.market, event.missed, event.gatherer) == ("seq", MARKET, 3, "g3")
    assert (event.raw_ts_ms, event.dedup_ns) == (1_767_225_600_001, T0 + 2)


def test_events_carry_the_hop_stamps_they_are_given() -> None:
    frame = gatherer_copies(pipeline_events(1, markets=1, t0_ns=T0), "g1")[0]
    decision = Deduper(MemoryStore()).decide(encode_raw(frame), Origin("raw.g1", 0, 0))
    event = decision_event(decision, raw_ts_ms=1_767_225_600_005, dedup_ns=T0 + 9_000_000)
    assert (event.raw_ts_ms, event.dedup_ns) == (1_767_225_600_005, T0 + 9_000_000)
    assert (decision_event(decision).raw_ts_ms, decision_event(decision).dedup_ns) == (0, 0)  # unstamped: defaults
