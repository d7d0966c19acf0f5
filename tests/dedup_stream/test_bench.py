"""The dedup benchmark's modules import (no rot) and its rocksdict TTL store behaves like the worker's state."""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.dedup.logic_only import RdictStore
from dedup_stream.logic import Deduper, Origin, Verdict
from dedup_stream.synth import gatherer_copies, venue_events
from schemas import encode_raw


def test_bench_modules_import() -> None:
    for name in ("bench.dedup.__main__", "bench.dedup.baseline", "bench.dedup.logic_only", "bench.dedup.faust_noop"):
        assert importlib.import_module(name)


def test_rocksdict_ttl_store_dedups_synthetic_copies(tmp_path: Path) -> None:
    events = venue_events(500, markets=5, seed=2)
    store = RdictStore(str(tmp_path / "db"), ttl_s=3600)
    deduper = Deduper(store)
    verdicts = []
    for g in ("g1", "g2", "g3"):
        for offset, frame in enumerate(gatherer_copies(events, g)):
            verdicts.append(deduper.decide(encode_raw(frame), Origin(f"raw.{g}", 0, offset)).verdict)
    store.db.close()
    assert verdicts.count(Verdict.WON) == len(events)
    assert verdicts.count(Verdict.DUPLICATE) == 2 * len(events)
