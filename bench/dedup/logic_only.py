"""Ceiling of the dedup decision itself: ``Deduper.decide`` + normalisation of winners over a rocksdict store,
no Kafka and no Faust (what any engine running this logic would pay per frame on this machine)."""

from __future__ import annotations

import tempfile
import time

from rocksdict import AccessType, Options, Rdict

from dedup_stream.logic import Deduper, Origin
from dedup_stream.synth import gatherer_copies, pipeline_events
from schemas import encode_event, encode_raw
from venues import default_name, get_venue

__all__ = ["RdictStore", "measure"]


class RdictStore:
    """rocksdict with TTL, one DB for all partitions (enough to price a lookup and a write)."""

    def __init__(self, path: str, ttl_s: int) -> None:
        self.db = Rdict(path, options=Options(raw_mode=True), access_type=AccessType.with_ttl(ttl_s))

    def get(self, key: bytes, partition: int) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.db[key] = value


def measure(events: int = 50_000, markets: int = 20_000) -> float:
    """Frames per second through decide() + to_event/encode_event for winners (3 copies per event)."""
    evs = pipeline_events(events, markets=markets, seed=4)
    to_event = get_venue(default_name()).normaliser()
    frames = [encode_raw(f) for g in ("g1", "g2", "g3") for f in gatherer_copies(evs, g)]
    with tempfile.TemporaryDirectory() as tmp:
        store = RdictStore(tmp + "/db", 3600)
        deduper = Deduper(store)
        started = time.perf_counter()
        for offset, value in enumerate(frames):
            decision = deduper.decide(value, Origin("raw", offset % 6, offset))
            if decision.emit and decision.frame is not None:
                encode_event(to_event(decision.frame))
        elapsed = time.perf_counter() - started
        store.db.close()
    return len(frames) / elapsed


if __name__ == "__main__":
    print(f"{measure():,.0f} frames/s")
