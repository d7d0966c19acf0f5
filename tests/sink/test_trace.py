"""The sink's hop trace: the file format, the runs a batch records, and a loader writing it for what it commits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench.sink.data import make_events
from schemas import encode_event
from sink.batch import Batch, Source
from sink.trace import ENTRY, HopTrace, TraceEntry, read_trace


def test_entries_round_trip_across_writers_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t" / "hops.trace"
    first = HopTrace(path)
    first.write([(0, 10, 19, 1_000), (3, 5, 5, 1_001)], commit_ns=2_000)
    first.write([], commit_ns=2_500)  # nothing to record: nothing written
    first.close()
    second = HopTrace(path)  # a restarted sink appends to the same file
    second.write([(0, 20, 29, 3_000)], commit_ns=4_000)
    second.close()
    with path.open("ab") as f:
        f.write(ENTRY.pack(1, 2, 3, 4, 5)[:17])  # a SIGKILL in the middle of a write
    assert list(read_trace(path)) == [
        TraceEntry(0, 10, 19, 1_000, 2_000),
        TraceEntry(3, 5, 5, 1_001, 2_000),
        TraceEntry(0, 20, 29, 3_000, 4_000),
    ]


def _msgs(topic: str, partition: int, offsets: range) -> list[Source]:
    payload = encode_event(make_events(1, seed=3)[0])
    return [Source(topic, partition, o, payload) for o in offsets]


def test_a_tracing_batch_records_each_run_of_events_with_its_read_time() -> None:
    batch = Batch("ev", "mk", runs=[], fast=None)
    chunk = _msgs("ev", 2, range(5, 9)) + _msgs("mk", 2, range(0, 3)) + _msgs("ev", 0, range(7, 8))
    chunk += _msgs("ev", 2, range(9, 11))  # partition 2 again after others: a new run
    batch.add_many(chunk, read_ns=111)
    batch.add_many(_msgs("ev", 0, range(8, 10)), read_ns=222)
    assert batch.runs == [(2, 5, 8, 111), (0, 7, 7, 111), (2, 9, 10, 111), (0, 8, 9, 222)]  # markets runs left out
    assert batch.offsets == {("ev", 2): 11, ("mk", 2): 3, ("ev", 0): 10}
    batch.clear()
    assert batch.runs == []
    plain = Batch("ev", "mk", fast=None)  # the default: no trace, nothing recorded
    plain.add_many(chunk, read_ns=111)
    assert plain.runs is None


@pytest.mark.integration
def test_the_loader_traces_every_record_it_commits(sink_env: Any, tmp_path: Path) -> None:
    path = tmp_path / "hops.trace"
    sink = msgspec.structs.replace(sink_env.config.sink, hop_trace=str(path), writers=2)
    env = sink_env.with_config(sink=sink)
    events = make_events(3000, markets=30, seed=41)
    env.produce(events)
    before_ns = time.time_ns()
    stats = env.run_loader("g-trace", batch_rows=400)
    assert stats.rows == len(events)
    entries = list(read_trace(path))
    covered: dict[int, list[int]] = {}
    for e in entries:
        assert before_ns < e.read_ns <= e.commit_ns, e
        covered.setdefault(e.partition, []).extend(range(e.first_offset, e.last_offset + 1))
    assert sum(len(v) for v in covered.values()) == len(events)  # each committed record exactly once
    for offsets in covered.values():
        assert sorted(offsets) == list(range(len(offsets)))
