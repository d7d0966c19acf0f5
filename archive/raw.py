"""``mdpipe archive raw``: the raw topics (and ``markets``) -> Parquet by gatherer, date and partition, resumable.

Layout (hive-style; ``date`` is the UTC date of the broker's append time)::

    DIR/raw/gatherer=<id>/date=YYYY-MM-DD/p<partition>-<first offset>-<last offset>.parquet
    DIR/markets/date=YYYY-MM-DD/p<partition>-<first offset>-<last offset>.parquet
    DIR/_runs/<UTC time>.json    what each run covered: offsets per topic partition, and ranges already expired

One row per raw frame. A raw record carries one frame, or a bundle of several (:mod:`schemas.raw_record`): each
frame of a bundle gets its own row, in bundle order, with the record's Kafka coordinates and ``slot``, its index in
the bundle (NULL for a record of one frame). ``value`` is one frame verbatim (the RawFrame msgpack the gatherer
produced), with the record's ``key``, its Kafka coordinates (``topic``, ``partition``, ``offset``, ``kafka_ts``: the
broker's append time) and, for reading without mdpipe, the envelope decoded (``gatherer``, ``kind``, ``market``,
``event_key``, ``recv_ns``, ``venue_payload``: the venue's JSON; NULL for a frame that does not decode, which is
archived all the same, and for a bundle that does not split, archived as one row holding the record's bytes).
Files written before ``slot`` existed lack the column: readers take it as NULL (:mod:`archive.reader`).

A run reads each partition from where the archive ends (the greatest last offset in the file names, + 1) up to the
end the broker reported when the run started, then stops: a second run appends only what is new. A partition's
files are written in offset order (a buffer is written when its date changes, when it holds ``max_rows`` rows and at
the end; the rows of one bundle always go to one file, which may so pass ``max_rows``: a file named first..last holds
every frame of the records first..last), each under a temporary name renamed into place (:mod:`archive.storage`), so
a crash loses at most the buffers not yet written, which the next run reads again. Offsets the broker no longer has
(retention passed before the archive ran) are logged (``archive_raw_expired``) and listed in the run's record.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from archive.storage import Location
from mdpipe.failures import Misconfigured
from mdpipe.logging import get_logger
from schemas import SchemaError, decode_raw
from schemas.raw_record import is_bundle, split_bundle

__all__ = ["RAW_SCHEMA", "RawArchiver", "RawRun", "SourceTopic", "archived_ends", "file_name", "parse_file_name"]

log = get_logger(__name__)

RAW_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("slot", pa.int32()),  # the frame's index in its record's bundle; NULL: a record of one frame
        pa.field("kafka_ts", pa.timestamp("ms", tz="UTC")),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("gatherer", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("market", pa.string()),
        pa.field("event_key", pa.string()),
        pa.field("recv_ns", pa.int64()),
        pa.field("venue_payload", pa.string()),
    ]
)
_NAME = re.compile(r"p(\d+)-(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class SourceTopic:
    """A topic to archive and the directory (relative to the archive root) its files go to."""

    topic: str
    directory: str  # "raw/gatherer=g1" or "markets"


def file_name(partition: int, first: int, last: int) -> str:
    return f"p{partition:03d}-{first:012d}-{last:012d}.parquet"


def parse_file_name(path: str) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of an archive file name; None for anything else."""
    match = _NAME.search(path.rsplit("/", 1)[-1])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def archived_ends(location: Location, directory: str) -> dict[int, int]:
    """Per partition, the offset after the last one archived under ``directory``."""
    ends: dict[int, int] = {}
    for path in location.files(directory):
        parsed = parse_file_name(path)
        if parsed:
            partition, _, last = parsed
            ends[partition] = max(ends.get(partition, 0), last + 1)
    return ends


@dataclass
class RawRun:
    """What one run archived."""

    records: int = 0  # Kafka records
    rows: int = 0  # Parquet rows: frames (a bundle record gives one per frame)
    files: int = 0
    covered: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # topic -> partition -> [first, last]
    expired: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # offsets gone before archiving
    seconds: float = 0.0


def _utc_date(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


def _rows(
    topic: str, partition: int, offset: int, ts_ms: int, key: bytes | None, value: bytes | None
) -> list[dict[str, Any]]:
    """The rows of one record: one per frame of a bundle (``slot``: its index), else one (``slot`` NULL)."""
    if is_bundle(value) and not topic.endswith("markets"):
        try:
            frames = split_bundle(value)  # type: ignore[arg-type]
        except SchemaError:
            return [_row(topic, partition, offset, ts_ms, key, value, None, decode=False)]
        return [_row(topic, partition, offset, ts_ms, key, frame, slot) for slot, frame in enumerate(frames)]
    return [_row(topic, partition, offset, ts_ms, key, value, None)]


def _row(
    topic: str,
    partition: int,
    offset: int,
    ts_ms: int,
    key: bytes | None,
    value: bytes | None,
    slot: int | None,
    decode: bool = True,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "slot": slot,
        "kafka_ts": ts_ms,
        "key": key,
        "value": value,
    }
    if decode and value is not None and not topic.endswith("markets"):
        try:
            frame = decode_raw(value)
        except SchemaError:
            return row
        row.update(
            gatherer=frame.gatherer,
            kind=frame.kind,
            market=frame.market,
            event_key=frame.event_key,
            recv_ns=frame.recv_ns,
            venue_payload=frame.payload.decode("utf-8", "replace"),
        )
    return row


class _Buffer:
    def __init__(self, source: SourceTopic, partition: int) -> None:
        self.source = source
        self.partition = partition
        self.date = ""
        self.rows: list[dict[str, Any]] = []


class RawArchiver:
    """Archives ``sources`` into ``location`` from a confluent-kafka consumer configuration (no group commits)."""

    def __init__(
        self,
        consumer_conf: dict[str, Any],
        location: Location,
        sources: Sequence[SourceTopic],
        max_rows: int = 200_000,
        idle_s: float = 10.0,
    ) -> None:
        self.consumer_conf = consumer_conf
        self.location = location
        self.sources = list(sources)
        self.max_rows = max_rows
        self.idle_s = idle_s
        self.run_stats = RawRun()

    def run(self) -> RawRun:
        from confluent_kafka import Consumer, TopicPartition

        started = time.monotonic()
        stats = self.run_stats
        consumer = Consumer({**self.consumer_conf, "enable.partition.eof": False})
        try:
            by_topic = {s.topic: s for s in self.sources}
            meta = consumer.list_topics(timeout=30).topics
            assign: list[Any] = []
            ends: dict[tuple[str, int], int] = {}
            for source in self.sources:
                if source.topic not in meta:
                    raise Misconfigured(f"archive raw: topic {source.topic} does not exist", check="gather.ids")
                done = archived_ends(self.location, source.directory)
                for partition in sorted(meta[source.topic].partitions):
                    low, high = consumer.get_watermark_offsets(TopicPartition(source.topic, partition), timeout=30)
                    start = done.get(partition, 0)
                    if start < low:
                        stats.expired.setdefault(source.topic, {})[partition] = (start, low - 1)
                        log.warning(
                            "archive_raw_expired", topic=source.topic, partition=partition, first=start, last=low - 1
                        )
                        start = low
                    if start < high:
                        assign.append(TopicPartition(source.topic, partition, start))
                        ends[(source.topic, partition)] = high
            buffers: dict[tuple[str, int], _Buffer] = {}
            if assign:
                consumer.assign(assign)
            last_progress = time.monotonic()
            while ends:
                msgs = consumer.consume(10_000, timeout=1.0)
                if not msgs:
                    # offsets without a record (compaction, transaction markers): the position says they are passed
                    for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
                        if tp.offset >= ends[(tp.topic, tp.partition)]:
                            del ends[(tp.topic, tp.partition)]
                    if ends and time.monotonic() - last_progress > self.idle_s:
                        log.warning("archive_raw_stalled", waiting=sorted(f"{t}:{p}" for t, p in ends))
                        break
                    continue
                last_progress = time.monotonic()
                for msg in msgs:
                    if msg.error():
                        continue
                    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    end = ends.get((topic, partition))
                    if end is None or offset >= end:
                        continue
                    buffer = buffers.get((topic, partition))
                    if buffer is None:
                        buffer = buffers[(topic, partition)] = _Buffer(by_topic[topic], partition)
                    ts_ms = msg.timestamp()[1]
                    date = _utc_date(ts_ms)
                    if buffer.rows and (date != buffer.date or len(buffer.rows) >= self.max_rows):
                        self._write(buffer)
                    buffer.date = date
                    buffer.rows.extend(_rows(topic, partition, offset, ts_ms, msg.key(), msg.value()))  # one file
                    if offset >= end - 1:
                        del ends[(topic, partition)]
            for buffer in buffers.values():
                if buffer.rows:
                    self._write(buffer)
        finally:
            consumer.close()
        stats.seconds = time.monotonic() - started
        self._record_run()
        log.info(
            "archived_raw", records=stats.records, rows=stats.rows, files=stats.files, seconds=round(stats.seconds, 2)
        )
        return stats

    def _write(self, buffer: _Buffer) -> None:
        rows = buffer.rows
        first, last = rows[0]["offset"], rows[-1]["offset"]
        table = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
        relative = f"{buffer.source.directory}/date={buffer.date}/{file_name(buffer.partition, first, last)}"
        self.location.write_atomic(relative, lambda out: pq.write_table(table, out, compression="zstd"))
        stats = self.run_stats
        stats.records += sum(1 for row in rows if not row["slot"])  # a bundle's first frame, or a record alone
        stats.rows += len(rows)
        stats.files += 1
        covered = stats.covered.setdefault(buffer.source.topic, {})
        old = covered.get(buffer.partition)
        covered[buffer.partition] = (old[0] if old else first, last)
        buffer.rows = []

    def _record_run(self) -> None:
        stats = self.run_stats
        record = {
            "at": datetime.now(UTC).isoformat(),
            "records": stats.records,
            "rows": stats.rows,
            "files": stats.files,
            "covered": {t: {str(p): list(r) for p, r in parts.items()} for t, parts in stats.covered.items()},
            "expired": {t: {str(p): list(r) for p, r in parts.items()} for t, parts in stats.expired.items()},
        }
        name = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.location.write_atomic(f"_runs/{name}.json", lambda out: out.write(json.dumps(record, indent=1).encode()))
