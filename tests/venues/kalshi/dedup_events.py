"""How many events the dedup stage's pure logic makes of some raw frames, read in the order given (a helper of the
lifecycle tests: copies a gatherer records beside each other must come out as one event)."""

from __future__ import annotations

from collections.abc import Iterable

from dedup_stream.logic import Deduper, MemoryStore, Origin
from schemas.raw import RawFrame, encode_raw


def dedup_events(frames: Iterable[RawFrame], market: str | None = None) -> int:
    """Events emitted for ``frames`` (of ``market`` only, when given), each gatherer's frames on topic raw.<gatherer>
    at increasing offsets."""
    deduper = Deduper(MemoryStore())
    offsets: dict[str, int] = {}
    n = 0
    for f in frames:
        topic = f"raw.{f.gatherer}"
        offsets[topic] = offsets.get(topic, -1) + 1
        emitted = deduper.decide(encode_raw(f), Origin(topic, 0, offsets[topic])).emit
        n += emitted and (market is None or f.market == market)
    return n
