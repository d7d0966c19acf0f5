"""``mdpipe replay --from-archive DIR``: rebuild the database from a raw archive after Kafka's retention has passed.

The archived raw frames of each partition go, in replay order (:mod:`archive.reader`), through the same decision as
the live dedup (:class:`dedup_stream.logic.Deduper`: first copy wins, gap reports become coverage records, frames
that do not decode are dead letters), each with the origin the live dedup gives it (its record's offset, or for a
frame of a bundle :func:`schemas.raw_record.frame_origin` of that offset and its ``slot``), and the same
normalisation (:func:`dedup_stream.normalise.decision_bytes`, the events stamped with the raw record's append time as
live), then into the sink's own path: a :class:`sink.batch.Batch` of encoded events written by
:class:`sink.store.Store` (binary COPY; the unique ``(market, ts, event_key, venue)`` absorbs rows already present, so
a replay into a database that holds part of the data adds only the rest). The archived ``markets`` topic is upserted
the same way. Dead letters (undecodable frames, events that cannot be normalised or loaded) are counted and logged
with their archive coordinates (and a bundled frame's index); the archive keeps their bytes.

State: one in-memory dedup table per partition, dropped when the partition is done (memory grows with the distinct
events of the largest partition in the archive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from archive.reader import ArchivedRecord, archive_partitions, market_records, partition_records
from archive.storage import Location
from dedup_stream.logic import Deduper, MemoryStore, Origin, Verdict
from dedup_stream.normalise import decision_bytes
from mdpipe.logging import get_logger
from schemas import DeadLetter
from schemas.raw_record import frame_origin
from sink.batch import Batch, Source
from sink.store import Store

__all__ = ["REPLAY_EVENTS_TOPIC", "ReplayStats", "replay_archive"]

log = get_logger(__name__)
REPLAY_EVENTS_TOPIC = "archive-replay.events"  # the name the rebuilt events carry in the batch (and sink_offsets)
REPLAY_MARKETS_TOPIC = "archive-replay.markets"
_LOGGED_DEAD = 20


@dataclass
class ReplayStats:
    frames: int = 0
    events: int = 0
    duplicates: int = 0
    gaps: int = 0
    dead: int = 0  # undecodable frames, unmappable events, rows the database rejected
    markets: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    absorbed: int = 0  # rows already in the database
    seconds: float = 0.0


def replay_archive(
    location: Location, dsn: str, group_id: str = "archive-replay", batch_events: int = 20_000
) -> ReplayStats:
    started = time.monotonic()
    stats = ReplayStats()
    store = Store(dsn, group_id)
    dead_seen = 0

    def on_dead(dead: list[DeadLetter]) -> None:
        nonlocal dead_seen
        stats.dead += len(dead)
        for letter in dead:
            dead_seen += 1
            if dead_seen <= _LOGGED_DEAD:
                log.warning(
                    "replay_dead_letter",
                    reason=letter.reason,
                    topic=letter.source_topic,
                    partition=letter.source_partition,
                    offset=letter.source_offset,
                )

    def flush(batch: Batch) -> None:
        if not batch.size:
            return
        result = store.write(batch, on_dead)
        for table, n in result.rows.items():
            stats.rows[table] = stats.rows.get(table, 0) + n
        stats.absorbed += result.duplicates
        stats.markets += result.markets
        batch.clear()

    batch = Batch(events_topic=REPLAY_EVENTS_TOPIC, markets_topic=REPLAY_MARKETS_TOPIC)
    try:
        for partition in archive_partitions(location):
            deduper = Deduper(MemoryStore())
            seq = 0
            for rec in partition_records(location, partition):
                stats.frames += 1
                offset = rec.offset if rec.slot is None else frame_origin(rec.offset, rec.slot)  # as live
                decision = deduper.decide(rec.value, Origin(rec.topic, rec.partition, offset))
                verdict = decision.verdict
                if verdict is Verdict.INVALID:
                    on_dead([_letter(decision.error, rec)])
                    continue
                if verdict is Verdict.DUPLICATE:
                    stats.duplicates += 1
                    continue
                if not decision.emit and verdict is not Verdict.ALIAS:  # an alias record goes to the sink too
                    continue
                try:
                    payload = decision_bytes(decision, rec.kafka_ts_ms)
                except Exception as exc:  # as live: SchemaError, or a venue value that cannot be represented
                    on_dead([_letter(f"normalise: {type(exc).__name__}: {exc}", rec)])
                    continue
                stats.events += verdict is not Verdict.ALIAS
                stats.duplicates += verdict is Verdict.ALIAS
                stats.gaps += verdict is Verdict.GAP
                batch.add(Source(REPLAY_EVENTS_TOPIC, partition, seq, payload))
                seq += 1
                if batch.size >= batch_events:
                    flush(batch)
            flush(batch)
        for rec in market_records(location):
            batch.add(Source(REPLAY_MARKETS_TOPIC, rec.partition, rec.offset, rec.value or b""))
            if batch.size >= batch_events:
                flush(batch)
        flush(batch)
    finally:
        store.close()
    stats.seconds = time.monotonic() - started
    log.info(
        "replayed_archive",
        frames=stats.frames,
        events=stats.events,
        duplicates=stats.duplicates,
        dead=stats.dead,
        absorbed=stats.absorbed,
        seconds=round(stats.seconds, 2),
    )
    return stats


def _letter(reason: str, rec: ArchivedRecord) -> DeadLetter:
    """A dead letter of archived frame ``rec`` (payload: that frame; coordinates: its record's)."""
    return DeadLetter(
        stage="archive-replay",
        reason=reason if rec.slot is None else f"{reason} (frame {rec.slot} of a bundle)",
        payload=rec.value or b"",
        source_topic=rec.topic,
        source_partition=rec.partition,
        source_offset=rec.offset,
        at_ns=time.time_ns(),
    )
