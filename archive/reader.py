"""Reads a raw archive (:mod:`archive.raw`) back in replay order.

Replay order. Live, dedup keeps the copy of an event it reads first; across the raw topics of one partition that is
the copy the broker appended first, as long as dedup keeps up. The reader therefore merges, per partition, every
gatherer's records by (``kafka_ts``: the broker's append time, topic name, offset): each topic's records in offset
order, the earliest-appended copy first, and on a tie in the same millisecond the gatherer whose topic name sorts
first. (A dedup that was far behind may have picked another copy live: the rebuilt row then differs only in
``gatherer`` and ``received_at``.) The frames of one bundle share all three and keep their bundle order (``slot``:
each gatherer's rows stay in file order). Memory: one file per gatherer at a time.

Bundles: a row is one frame (``slot``: its index in its record's bundle, None for a record of one frame). Files
written before the ``slot`` column existed read with ``slot`` None, and a row there that holds a whole bundle record
(archived before :mod:`archive.raw` split them) is read as its frames, as the archiver now writes them; a bundle that
does not split stays one row.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from archive.raw import parse_file_name
from archive.storage import Location
from schemas import SchemaError
from schemas.raw_record import is_bundle, split_bundle

__all__ = ["ArchivedRecord", "archive_partitions", "frame_rows", "iter_files", "market_records", "partition_records"]


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    topic: str
    partition: int
    offset: int
    kafka_ts_ms: int
    key: bytes | None
    value: bytes | None
    slot: int | None = None  # the frame's index in its record's bundle; None: a record of one frame


_COLUMNS = ["topic", "partition", "offset", "kafka_ts", "key", "value"]


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
    """Every row of ``paths``, in file order then row order (``slot`` None where a file has no such column)."""
    for path in paths:
        with location.fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            has_slot = "slot" in parquet.schema_arrow.names
            table = parquet.read(columns=[*_COLUMNS, "slot"] if has_slot else _COLUMNS)
        ts = table.column("kafka_ts").cast(pa.int64()).to_pylist()
        topics = table.column("topic").to_pylist()
        partitions = table.column("partition").to_pylist()
        offsets = table.column("offset").to_pylist()
        keys = table.column("key").to_pylist()
        values = table.column("value").to_pylist()
        slots = table.column("slot").to_pylist() if has_slot else [None] * table.num_rows
        for i in range(table.num_rows):
            yield ArchivedRecord(topics[i], partitions[i], offsets[i], ts[i], keys[i], values[i], slots[i])


def frame_rows(records: Iterator[ArchivedRecord]) -> Iterator[ArchivedRecord]:
    """``records`` with each row that holds a whole bundle record (``slot`` None: an archive written before bundles
    were split) replaced by one row per frame; a bundle that does not split is passed on as it is."""
    for rec in records:
        if rec.slot is None and is_bundle(rec.value):
            try:
                frames = split_bundle(rec.value)  # type: ignore[arg-type]
            except SchemaError:
                yield rec
                continue
            for slot, frame in enumerate(frames):
                yield ArchivedRecord(rec.topic, rec.partition, rec.offset, rec.kafka_ts_ms, rec.key, frame, slot)
        else:
            yield rec


def partition_records(location: Location, partition: int) -> Iterator[ArchivedRecord]:
    """Every gatherer's archived frames of ``partition``, merged in replay order (module docstring)."""
    owners = _layout(location, "raw").get(partition, {})
    streams = [frame_rows(iter_files(location, [p for _, p in files])) for _, files in sorted(owners.items())]
    return heapq.merge(*streams, key=lambda r: (r.kafka_ts_ms, r.topic, r.offset))


def market_records(location: Location) -> Iterator[ArchivedRecord]:
    """The archived ``markets`` topic, partition by partition in offset order."""
    for _, owners in sorted(_layout(location, "markets").items()):
        for files in owners.values():
            yield from iter_files(location, [p for _, p in files])
