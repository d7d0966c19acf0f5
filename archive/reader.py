"""Reads a raw archive (:mod:`archive.raw`) back in replay order.

Replay order. Live, dedup keeps the copy of an event it reads first; across the raw topics of one partition that is
the copy the broker appended first, as long as dedup keeps up. The reader therefore merges, per partition, every
gatherer's records by (``kafka_ts``: the broker's append time, topic name, offset): each topic's records in offset
order, the earliest-appended copy first, and on a tie in the same millisecond the gatherer whose topic name sorts
first. (A dedup that was far behind may have picked another copy live: the rebuilt row then differs only in
``gatherer`` and ``received_at``.) Memory: one file per gatherer at a time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from archive.raw import parse_file_name
from archive.storage import Location

__all__ = ["ArchivedRecord", "archive_partitions", "iter_files", "market_records", "partition_records"]


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    topic: str
    partition: int
    offset: int
    kafka_ts_ms: int
    key: bytes | None
    value: bytes | None


def _layout(location: Location, directory: str) -> dict[int, dict[str, list[tuple[int, str]]]]:
    """partition -> sub-directory (one per gatherer) -> [(first offset, path)] sorted."""
    out: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for path in location.files(directory):
        parsed = parse_file_name(path)
        if parsed is None:
            continue
        partition, first, _ = parsed
        rel = location.relative(path).split("/")
        owner = rel[1] if directory == "raw" and len(rel) > 2 else directory
        out.setdefault(partition, {}).setdefault(owner, []).append((first, path))
    for owners in out.values():
        for files in owners.values():
            files.sort()
    return out


def archive_partitions(location: Location) -> list[int]:
    return sorted(_layout(location, "raw"))


def iter_files(location: Location, paths: list[str]) -> Iterator[ArchivedRecord]:
    """Every record of ``paths``, in file order then row order."""
    for path in paths:
        with location.fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["topic", "partition", "offset", "kafka_ts", "key", "value"])
        ts = table.column("kafka_ts").cast(pa.int64()).to_pylist()
        topics = table.column("topic").to_pylist()
        partitions = table.column("partition").to_pylist()
        offsets = table.column("offset").to_pylist()
        keys = table.column("key").to_pylist()
        values = table.column("value").to_pylist()
        for i in range(table.num_rows):
            yield ArchivedRecord(topics[i], partitions[i], offsets[i], ts[i], keys[i], values[i])


def partition_records(location: Location, partition: int) -> Iterator[ArchivedRecord]:
    """Every gatherer's archived records of ``partition``, merged in replay order (module docstring)."""
    owners = _layout(location, "raw").get(partition, {})
    streams = [iter_files(location, [p for _, p in files]) for _, files in sorted(owners.items())]
    return heapq.merge(*streams, key=lambda r: (r.kafka_ts_ms, r.topic, r.offset))


def market_records(location: Location) -> Iterator[ArchivedRecord]:
    """The archived ``markets`` topic, partition by partition in offset order."""
    for _, owners in sorted(_layout(location, "markets").items()):
        for files in owners.values():
            yield from iter_files(location, [p for _, p in files])
