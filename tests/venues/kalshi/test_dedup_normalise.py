"""Kalshi's frames through the dedup stage's decisions (:func:`dedup_stream.normalise.decision_event`): a snapshot
carries its delta-stream position, lifecycle times stay the receive time, and the one-pass normalisation of winners
equals the two-pass mapping (envelope, then the msg bytes) for every kind the pipeline carries."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from dedup_stream.logic import Deduper, MemoryStore, Origin
from dedup_stream.normalise import decision_event
from schemas import RawFrame, encode_raw
from schemas.events import BookSnapshot, Lifecycle

T0 = 1_767_225_600_000_000_000
MARKET = "KXDEMO-26JAN01-T50"


def snapshot_frame(gatherer: str, venue_ms: int | None, after_keys: list[str], recv_ns: int = T0) -> RawFrame:
    msg = {"market_ticker": MARKET, "market_id": "m-1", "yes_dollars_fp": [["0.4300", "12.00"]], "no_dollars_fp": []}
    payload = msgspec.json.encode({"type": "orderbook_snapshot", "sid": 2, "seq": 1, "msg": msg})
    return RawFrame(
        venue="kalshi", gatherer=gatherer, conn=1, sid=2, seq=1, recv_ns=recv_ns, kind="snapshot", market=MARKET,
        event_key="s:abc", payload=payload, venue_ms=venue_ms, after_keys=after_keys,
    )  # fmt: skip


def emitted(frame: RawFrame, offset: int = 0) -> object:
    decision = Deduper(MemoryStore()).decide(encode_raw(frame), Origin(f"raw.{frame.gatherer}", 0, offset))
    assert decision.emit
    return decision_event(decision)


def test_snapshot_with_a_venue_position_is_stamped_with_it() -> None:
    keys = ["d:KX|yes|0.43|5|1767225600120#1", "d:KX|no|0.50|-2|1767225600120#1"]
    event = emitted(snapshot_frame("g2", 1_767_225_600_120, keys, recv_ns=T0 + 900_000_000))
    assert isinstance(event, BookSnapshot)
    assert (event.ts_ms, event.after_keys, event.recv_ns) == (1_767_225_600_120, keys, T0 + 900_000_000)
    assert event.yes == [(Decimal("0.4300"), Decimal("12.00"))] and event.gatherer == "g2"


def test_snapshot_without_a_venue_position_keeps_the_receive_time() -> None:
    event = emitted(snapshot_frame("g1", None, [], recv_ns=T0 + 7_000_000))
    assert isinstance(event, BookSnapshot)
    assert (event.ts_ms, event.after_keys) == ((T0 + 7_000_000) // 1_000_000, [])


def test_lifecycle_times_are_unchanged() -> None:
    msg = {"market_ticker": MARKET, "event_type": "activated", "open_ts": 1767225600}
    payload = msgspec.json.encode({"type": "market_lifecycle_v2", "sid": 3, "seq": 4, "msg": msg})
    frame = RawFrame(
        venue="kalshi", gatherer="g1", conn=1, sid=3, seq=4, recv_ns=T0 + 5_000_000, kind="lifecycle", market=MARKET,
        event_key="l:1", payload=payload, venue_ms=1_767_225_000_000,
    )  # fmt: skip
    event = emitted(frame)
    assert isinstance(event, Lifecycle) and event.ts_ms == (T0 + 5_000_000) // 1_000_000


def test_one_pass_normalisation_equals_envelope_then_msg_for_every_kind() -> None:
    """Winners are parsed once (envelope and typed msg in one JSON pass); the event must be what the two-pass mapping
    (envelope, then the msg bytes) gives, for every kind the pipeline carries."""
    from dedup_stream.synth import gatherer_copies, pipeline_events
    from venues.kalshi.messages import decode_envelope, msg_to_event

    frames = gatherer_copies(pipeline_events(3000, markets=50, seed=11, venue="kalshi"), "g1")
    kinds = set()
    for frame in frames:
        env = decode_envelope(frame.payload)
        two_pass = msg_to_event(
            frame.kind, bytes(env.msg), market=frame.market, event_key=frame.event_key, recv_ns=frame.recv_ns,
            gatherer=frame.gatherer, envelope_type=env.type,
        )  # fmt: skip
        if frame.venue_ms is not None and isinstance(two_pass, BookSnapshot):
            two_pass.ts_ms, two_pass.after_keys = frame.venue_ms, list(frame.after_keys)
        assert emitted(frame) == two_pass
        kinds.add(frame.kind)
    assert kinds >= {"snapshot", "delta", "trade", "ticker", "lifecycle"}
