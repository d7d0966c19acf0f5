"""Collect each event's trip (:class:`ops.hops.Trip`) after a run: the ``events`` topic plus the sink's hop trace.

Read once the run is over (outside any measured window): every record of ``events`` gives its event's identity, its
gatherer receive time and dedup stamps (:mod:`schemas.events`) and its own append time (the record timestamp); the
sink's trace (:mod:`sink.trace`) gives, by (partition, offset), when the sink read it and when it committed it.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ops.hops import Trip
from ops.verify import Identity, identity
from schemas import SchemaError, decode_event
from schemas.events import BookDelta, Lifecycle, Ticker, Trade
from sink.trace import TraceEntry, read_trace

__all__ = ["CommitIndex", "TripStats", "read_trips", "trips_from_records"]

KIND_OF: dict[type, str] = {BookDelta: "delta", Trade: "trade", Ticker: "ticker", Lifecycle: "lifecycle"}


class CommitIndex:
    """(partition, offset) -> (read_ns, commit_ns) from the sink's trace entries."""

    def __init__(self, entries: Iterable[TraceEntry]) -> None:
        by_partition: dict[int, list[TraceEntry]] = {}
        for e in entries:
            by_partition.setdefault(e.partition, []).append(e)
        self._runs: dict[int, tuple[list[int], list[TraceEntry]]] = {}
        for p, runs in by_partition.items():
            runs.sort(key=lambda e: e.first_offset)
            self._runs[p] = ([e.first_offset for e in runs], runs)

    def lookup(self, partition: int, offset: int) -> tuple[int, int]:
        """(read_ns, commit_ns) of the committed batch that held this record; (0, 0) when the trace has none.

        The sink commits each offset once (offsets are stored with the rows), so runs never overlap."""
        found = self._runs.get(partition)
        if found is None:
            return 0, 0
        firsts, runs = found
        i = bisect.bisect_right(firsts, offset) - 1
        if i >= 0 and runs[i].last_offset >= offset:
            return runs[i].read_ns, runs[i].commit_ns
        return 0, 0


@dataclass
class TripStats:
    records: int = 0  # events records read
    venue_events: int = 0  # of which venue events (not snapshots or gap reports)
    untraced: int = 0  # venue events without a sink trace entry (their sink hops are unknown)
    unstamped: int = 0  # venue events without dedup stamps (an older producer)
    undecodable: int = 0
    read_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def trips_from_records(
    records: Iterable[tuple[int, int, int, bytes]], commits: CommitIndex, stats: TripStats
) -> dict[Identity, list[Trip]]:
    """Trips by identity from ``events`` records (partition, offset, append time ms, value)."""
    out: dict[Identity, list[Trip]] = {}
    for partition, offset, append_ms, value in records:
        stats.records += 1
        try:
            event = decode_event(value)
        except SchemaError:
            stats.undecodable += 1
            continue
        kind = KIND_OF.get(type(event))
        if kind is None or getattr(event, "alias", False):  # snapshots, gap reports, lifecycle alias records: no
            continue  # venue event of their own to pair with
        stats.venue_events += 1
        read_ns, commit_ns = commits.lookup(partition, offset)
        stats.untraced += commit_ns == 0
        stats.unstamped += event.dedup_ns <= 0
        trip = Trip(
            event.event_key,
            event.recv_ns,
            event.raw_ts_ms * 1_000_000 if event.raw_ts_ms > 0 else 0,
            event.dedup_ns,
            append_ms * 1_000_000 if append_ms > 0 else 0,
            read_ns,
            commit_ns,
        )
        ident = identity(kind, event.market, msgspec.structs.asdict(event))
        out.setdefault(ident, []).append(trip)
    return out


def _read_topic(client_conf: dict[str, Any], topic: str, timeout_s: float) -> Iterable[tuple[int, int, int, bytes]]:
    """Every record of ``topic`` up to its end offsets now: (partition, offset, timestamp ms, value)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **client_conf,
            "group.id": "mdpipe-hops-reader",  # never joins: partitions are assigned, nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 << 20,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        left = set(ends)
        deadline = time.monotonic() + timeout_s
        while left:
            msgs = consumer.consume(10_000, 0.5)
            if not msgs:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}: partitions {sorted(left)} not read to their end")
                continue
            deadline = time.monotonic() + timeout_s
            for msg in msgs:
                if msg.error() is not None:
                    continue
                p, offset = msg.partition(), msg.offset()
                yield p, offset, msg.timestamp()[1], msg.value() or b""
                if offset + 1 >= ends[p]:
                    left.discard(p)
    finally:
        consumer.close()


def read_trips(
    client_conf: dict[str, Any], events_topic: str, trace_path: Path, timeout_s: float = 30.0
) -> tuple[dict[Identity, list[Trip]], TripStats]:
    """Trips by identity for every venue event on ``events_topic``, with the sink's trace at ``trace_path``."""
    started = time.monotonic()
    commits = CommitIndex(read_trace(trace_path) if trace_path.is_file() else ())
    stats = TripStats()
    trips = trips_from_records(_read_topic(client_conf, events_topic, timeout_s), commits, stats)
    stats.read_s = round(time.monotonic() - started, 1)
    return trips, stats
