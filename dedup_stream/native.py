"""Native dedup engine: one confluent-kafka batch consumer over every raw topic -> first copy wins -> ``events``.

Same decision (:class:`dedup_stream.logic.Deduper`), metrics, health endpoint, DLQ and ``dedup_stop`` summary
as the Faust engine (:mod:`dedup_stream.app`), without Faust's per-message machinery: messages come in
batches from ``Consumer.consume(num_messages=N)`` and go out through librdkafka's own batching.

Partitions. The worker joins consumer group = app id with the ``range`` assignor. The raw topics share one
partition count and one partitioner, so range gives partition *i* of every raw topic to the same member;
:func:`dedup_stream.rebalance.copartitioned` checks that on every assignment and the worker stops if it ever
fails (partition *i*'s state would be split between workers).

State. One rocksdict DB per assigned partition under ``<workdir>/native`` with a RocksDB TTL of ``window_s``
(:mod:`dedup_stream.partition_state`: no Python index of live keys, expiry at compaction, lazily, which only ever keeps
a key longer). Every first sight (and every re-emit, see below) is also written to ``<app_id>-seen-changelog``
(compact,delete, retention = window), as one batch record per consumed batch and partition
(:mod:`dedup_stream.changelog_format`; a changelog of older single records is still restored). On assignment each
partition's DB is brought up to the changelog's high-water mark from the offset it already covers
(:mod:`dedup_stream.restore`) before any raw record of that partition is read; on revocation the worker commits and
closes the DBs.

Expired raw records. At every assignment the worker also compares the group's committed offsets with the partitions'
log starts, and while running it watches librdkafka's offset resets: raw records that retention deleted before they
were read are logged and counted (``mdpipe_dedup_raw_expired_records``), never skipped in silence
(:mod:`dedup_stream.expiry`).

State before events. A batch's events are handed to the producer only once its state is in RocksDB *and* its
changelog records are acknowledged by the broker (they wait in a short queue meanwhile, so the next batch is
decided while the changelog is in flight): an event that left the process always has its winner in the changelog,
so whoever restores the partition next (this worker after a SIGKILL, or another one after a failover) replays the
same copy, never another gatherer's.

Membership. With ``group_instance_id`` (dedup.group_instance_id; by default ``<host>-<workdir name>``) the worker
is a static member: stopping does not leave the group and a restart under the same id gets the same partitions back
at once, without a rebalance (a rolling restart moves no partition; a SIGKILLed worker started again does not wait
for its old session to expire). Its local RocksDB state is kept under the workdir, so the restore after such a
restart reads only the changelog records past the offset the state stored at its last commit.

Commit protocol. A commit names offset + 1 of the last frame *processed* per input partition
(``enable.auto.offset.store`` is off: a frame librdkafka put in a batch that a revocation cut short is never
committed), and only once every output of those frames is acknowledged (any delivery failure exits with
``EXIT_OUTPUT_FAILED`` *before* committing); the acknowledged changelog offsets are then stored in the partition DBs.
Every ``commit_interval_s`` or ``commit_every`` frames the worker takes a commit point
(:mod:`dedup_stream.commit_point`) and reads on: the events of batches after the point wait until everything before
it is acknowledged, then the offsets are committed asynchronously (a failed one merged back into the next). On
revocation and on stop it flushes the changelog, hands the held events over, flushes both producers and commits
synchronously; retriable commit errors are retried; a commit that still fails is only a re-read for the next owner.
A frame whose partition is no longer assigned is skipped. Local RocksDB is written before its output is
acknowledged, so after a SIGKILL a frame can find its own key already stored: the stored value is the origin of
the accepted copy, and a replay of that same origin is emitted again (the sink's unique key absorbs the repeat).
That local winner's changelog record may never have been acknowledged (the worker died waiting for it): the
re-emit therefore writes the winner to the changelog again and its event is held like a first sight's (see
:mod:`dedup_stream.logic`), so the promise above also holds for re-emitted events.

Gap reports (frames of kind ``gap``) are forwarded as ``Gap`` coverage records, without state
(:mod:`dedup_stream.gaps`); what an emitting decision becomes is :func:`dedup_stream.normalise.decision_event`,
shared with the Faust engine.

Output: ``events`` key = market id, partition = the input partition (same count, same key hash),
value = ``decision_bytes(decision)`` (the bytes of ``encode_event(decision_event(decision))``, by the venue's event
encoder where it has one); a lifecycle copy that brought new keys to an emitted event is a duplicate emitted as an
alias record (:attr:`dedup_stream.logic.Verdict.ALIAS`).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from dedup_stream.commit_point import CommitPoint, merge_back
from dedup_stream.expiry import ExpiredCounts, OffsetReset, ResetWatch, expired_unread
from dedup_stream.lag import RawLag
from dedup_stream.logic import PLAIN_DUPLICATE, Decision, Deduper, Verdict, weak_match_fields
from dedup_stream.metrics import DedupCollector, register
from dedup_stream.native_output import NativeOutput
from dedup_stream.normalise import decision_bytes
from dedup_stream.output import EXIT_OUTPUT_FAILED
from dedup_stream.partition_state import PartitionStates
from dedup_stream.rebalance import CoPartitionError, caught_up, copartitioned
from dedup_stream.restore import ChangelogRestorer, ensure_changelog
from dedup_stream.settings import DedupSettings, changelog_topic
from mdpipe.kafka import FETCH_QUEUE_BACKOFF_MS, log_starts
from mdpipe.logging import get_logger, kafka_client_logger
from schemas import DeadLetter, SchemaError, encode_dead_letter
from schemas.raw_record import BUNDLE_TAG, frame_origin, split_bundle

__all__ = ["NativeWorker"]

log = get_logger(__name__)
_ALIAS = Verdict.ALIAS  # a duplicate that is emitted as a lifecycle alias record (dedup_stream.logic)


def _log_weak(decision: Decision) -> None:
    log.info("weak_match", **weak_match_fields(decision))


def _reset_fields(reset: OffsetReset) -> dict[str, Any]:
    return {
        "topic": reset.topic,
        "partition": reset.partition,
        "at_offset": reset.at,
        "to_offset": reset.to,
        "reason": reset.reason,
    }


# The worker wakes at the first frame that arrives (``poll``) and takes whatever else is already queued
# (``consume(n, 0)``): no frame waits for a batch to fill. How much one wake-up brings is set by the fetch
# (dedup.fetch_min_bytes / dedup.fetch_wait_ms, documented in mdpipe.config with their latency cost); the
# producers' linger is dedup.linger_ms.
# How long the loop sleeps in poll() when no frame arrives: only housekeeping waits for it (the 1-s tick, interval
# commits, the idle check). A frame that arrives ends the wait at once.
_IDLE_POLL_S = 0.1
# While events are held (or a commit point waits for its acknowledgements) and no frame arrives, poll this often.
_HELD_POLL_S = 0.002
# The most frames one wake-up takes (``consume``): batches are this full only when the worker is behind (from a full
# batch on it decides the next one while the previous one's changelog is in flight). Not a timer: docs/latency-budget.md
# consume() counts records, which may be bundles of frames: the worker asks for BATCH_FRAMES / (frames per record of
# its last batch) records (_batch_records).
BATCH_FRAMES = 5000


def _batch_records(frames: int, records: int) -> int:
    """Records for the next ``consume``: about :data:`BATCH_FRAMES` frames at the last batch's frames per record."""
    if frames <= records or not records:
        return BATCH_FRAMES
    return max(1, BATCH_FRAMES * records // frames)


def _in_bundle(reason: str, bundled: bool, index: int) -> str:
    """A dead letter's reason, naming the frame's index when it came in a bundle (its payload is that frame)."""
    return f"{reason} (frame {index} of a bundle)" if bundled else reason


# commit errors that mean this member's generation is over: not a failure of this worker's output
_LOST_GENERATION = (
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
)
# transient commit errors (the coordinator moving or busy): retried, then left to the next commit
_RETRIABLE_COMMIT = (
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD,
    KafkaError._TRANSPORT,
)
_COMMIT_RETRY_S = 30.0
_MAX_HELD_BATCHES = 32  # batches whose events wait for their changelog acknowledgements before the worker blocks
# How long the loop waits for a batch's changelog acknowledgement before it reads on (the batch's events then go out at
# the first poll that finds them acknowledged). A broker that acknowledges at once (the steady state) is waited for,
# so the events leave without a further wake-up; one slow to acknowledge (start-up, when three gatherers subscribe and
# the venue answers every subscription with a snapshot: up to seconds) does not stop the reading, or every frame that
# arrived meanwhile would wait for that acknowledgement AND then for its own (its changelog sent only after it).
_ACK_WAIT_S = 0.05
_LOST_FLUSH_S = 10.0  # on lost partitions: how long to let their changelog records land
_FLUSH_TIMEOUT_S = 330.0  # > librdkafka's message.timeout.ms (300 s): every record ends one way or the other
# How long the expired-records check of an assignment waits for the broker (committed offsets, then the low watermarks
# together) before it gives up with a warning: it delays the assignment, and librdkafka's own reset is still
# reported (_report_resets).
_EXPIRY_CHECK_TIMEOUT_S = 5.0


class NativeWorker:
    """One native dedup worker (``run`` runs it until SIGTERM/SIGINT, or idle with ``exit_when_idle``)."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = s = settings
        self.client_conf: dict[str, Any] = s.client_conf or {"bootstrap.servers": s.bootstrap_servers}
        self.changelog_topic = changelog_topic(s.app_id)
        self.output = NativeOutput(
            {
                **self.client_conf,
                "partitioner": "murmur2_random",
                "compression.type": s.compression,
                "linger.ms": s.config.linger_ms,
                "batch.num.messages": 10000,
                "batch.size": 1 << 20,
                "queue.buffering.max.messages": 500_000,
            },
            self.changelog_topic,
        )
        self.states = PartitionStates(Path(s.workdir) / "native", s.window_s, self.output.put_changelog)
        self.batches = 0  # consumed batches processed (frames / batches = the mean batch)
        self.deduper = Deduper(
            self.states, singles_horizon_ns=int(s.config.singles_horizon_s * 1e9), time_range=s.time_range
        )
        self.raw_lag = RawLag(s.raw_topics)  # fed by the consumer's statistics, read at scrape time
        self.expired = ExpiredCounts(s.raw_topics)  # raw records retention deleted unread (dedup_stream.expiry)
        self.collector = DedupCollector(
            self.deduper.stats,
            self._extra,
            lambda: self.deduper.singles.pending,
            lambda: self.raw_lag.snapshot(self._owned_set, int(time.time() * 1000)),
            self.expired,
        )
        # the consumer's librdkafka logger: passes every line on, keeps its offset resets for _report_resets
        self._reset_watch = ResetWatch(self.client_conf.get("logger") or kafka_client_logger(), frozenset(s.raw_topics))
        # (raw topic, partition) -> committed offset the last assignment found below the log start: librdkafka's
        # reset from that offset is the same loss, already counted
        self._expired_at: dict[tuple[str, int], int] = {}
        self.events_out = 0
        self.unmappable = 0
        self.frames = 0
        self.first_frame: float | None = None
        self.last_frame = time.monotonic()
        self.first_cpu = self.last_cpu = 0.0
        self._match_ages: deque[float] = deque(maxlen=60)
        self._last_match_age = 0.0
        self._stopping = False
        self._running = False
        self._owned: list[int] = []  # partitions assigned now (their DBs are open)
        self._owned_set: frozenset[int] = frozenset()
        self._positions: dict[tuple[str, int], int] = {}  # (raw topic, partition) -> last offset processed
        # events of decided batches, each with the changelog mark that must be acknowledged before they go out
        self._held: deque[tuple[dict[int, int], list[tuple[bytes, bytes | None, int]]]] = deque()
        self._point: CommitPoint | None = None  # the interval commit waiting for its acknowledgements
        self._issued: dict[tuple[str, int], int] = {}  # (raw topic, partition) -> last offset sent in a commit
        self._consumer: Consumer | None = None
        self._restorer: ChangelogRestorer | None = None
        self._callback_error: BaseException | None = None  # raised in a rebalance callback

    # --- metrics / health / summary ---------------------------------------------------------------------------
    def _extra(self) -> dict[str, float]:
        return {
            "mdpipe_dedup_match_age_seconds": self._last_match_age,
            "mdpipe_dedup_window_seconds": self.settings.window_s,
            "mdpipe_dedup_events_out": self.events_out,
            "mdpipe_dedup_unmappable_frames": self.unmappable,
        }

    def is_healthy(self) -> bool:
        """For /healthz: running (joined the group or waiting for it) and not stopping."""
        return self._running and not self._stopping

    def busy_s(self) -> float:
        """Seconds between the first and the last batch of frames this worker processed."""
        return 0.0 if self.first_frame is None else self.last_frame - self.first_frame

    def busy_cpu_s(self) -> float:
        """Process CPU seconds (all threads) from the first frame to the last 1-s tick that saw new frames."""
        return self.last_cpu - self.first_cpu

    # --- rebalance --------------------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._assign(consumer, partitions)
        except BaseException as exc:  # raised through librdkafka it would lose its type: the loop re-raises it
            self._callback_error = exc

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owned = copartitioned([(tp.topic, tp.partition) for tp in partitions], self.settings.raw_topics)
        assert self._restorer is not None
        started = time.monotonic()
        self._check_expired(consumer, partitions)
        checked = time.monotonic()
        for p in owned:
            self.states.open(p)
        restored = self._restorer.restore_all(self.states, owned)
        self._owned = owned
        self._owned_set = frozenset(owned)
        self.raw_lag.assigned(int(time.time() * 1000))
        took = round(time.monotonic() - checked, 3)
        check_s = round(checked - started, 4)
        log.info("partitions_assigned", partitions=owned, restored=restored, restore_s=took, expiry_check_s=check_s)

    def _check_expired(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Report the raw records retention deleted before the group read them (:mod:`dedup_stream.expiry`): ONE
        committed-offsets request for every assigned partition, then a low-watermark lookup for each partition that
        has a committed offset. A broker that does not answer costs a warning, not the assignment."""
        self._expired_at = {}
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        try:
            found = consumer.committed(wanted, timeout=_EXPIRY_CHECK_TIMEOUT_S)
            committed = {(tp.topic, tp.partition): tp.offset for tp in found if tp.error is None and tp.offset >= 0}
            for topic, partition, low in log_starts(consumer, committed, _EXPIRY_CHECK_TIMEOUT_S):
                self._report_expired(topic, partition, committed[topic, partition], low)
        except KafkaException as exc:
            log.warning("raw_expiry_check_failed", error=str(exc), partitions=len(wanted))

    def _report_expired(self, topic: str, partition: int, committed: int, low: int) -> None:
        records = expired_unread(committed, low)
        if records:
            self._expired_at[topic, partition] = committed
            self.expired.add_records(topic, records)
            log.warning(
                "raw_expired_unread",
                topic=topic,
                partition=partition,
                committed=committed,
                log_start=low,
                records=records,
            )

    def _report_resets(self) -> None:
        """Log and count the fetch positions librdkafka reset since the last call (:class:`ResetWatch`). A reset from
        the committed offset the assignment check reported is that same loss (logged at info, records not counted
        again); any other reset's skipped records are the distance to the offset it went to, or to the low watermark
        when librdkafka's line does not name that offset."""
        for reset in self._reset_watch.take():
            self.expired.add_reset(reset.topic)
            key = (reset.topic, reset.partition)
            if reset.at is not None and self._expired_at.get(key) == reset.at:
                del self._expired_at[key]
                log.info("raw_offset_reset", **_reset_fields(reset), reported_at_assignment=True)
                continue
            records = self._skipped(reset.topic, reset.partition, reset.at, reset.to)
            if records:
                self.expired.add_records(reset.topic, records)
            log.warning("raw_offset_reset", **_reset_fields(reset), records=records)

    def _skipped(self, topic: str, partition: int, at: int | None, to: int | None) -> int | None:
        """Records a reset from ``at`` to ``to`` skipped (None: not known)."""
        if at is None:
            return None
        if to is None:
            if self._consumer is None:
                return None
            try:
                ((_, _, to),) = log_starts(self._consumer, [(topic, partition)], _EXPIRY_CHECK_TIMEOUT_S)
            except KafkaException:
                return None
        return expired_unread(at, to)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            if self._owned and self._callback_error is None:
                self._commit(consumer)
            self._close_states()
            log.info("partitions_revoked", partitions=len(partitions))
        except BaseException as exc:
            self._callback_error = exc

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # another worker may own them already: nothing is committed. Held events are dropped (their changelog may
        # not be acknowledged: the next owner decides those frames again); changelog records in flight are given
        # a moment to land, so that the next owner's restore is more likely to see them.
        try:
            dropped = sum(len(outs) for _, outs in self._held)
            self._held.clear()
            left = self.output.changelog.flush(_LOST_FLUSH_S)
            self._close_states()
            log.warning("partitions_lost", partitions=len(partitions), dropped_events=dropped, changelog_left=left)
        except BaseException as exc:
            self._callback_error = exc

    def _close_states(self) -> None:
        self.states.close_all()
        self._owned = []
        self._owned_set = frozenset()
        self._positions.clear()
        self._held.clear()
        self._point = None
        self._issued.clear()

    # --- events held until their changelog is acknowledged ----------------------------------------------------
    def _release(self, wait_s: float) -> None:
        """Hand held events to the producer, oldest first, as far as their changelog marks are acknowledged; wait for
        the acknowledgements up to ``wait_s`` seconds (``math.inf``: all of them), and as long as more than
        ``_MAX_HELD_BATCHES`` are held. Batches after a commit point wait for its commit (:meth:`_advance_commit`)."""
        held = self._held
        output = self.output
        output.changelog.poll(0)
        if held and output.first_error is not None:  # a record failed: its batch can never go, whatever else comes
            log.critical("output_failed_exiting", failures=output.failures, error=output.first_error)
            os._exit(EXIT_OUTPUT_FAILED)  # no event of that batch left, nothing committed past it
        deadline = time.monotonic() + wait_s
        while held:
            mark, outs = held[0]
            gated = not self._advance_commit()
            if gated or not output.changelog_acked(mark):
                if len(held) <= _MAX_HELD_BATCHES and (wait_s <= 0.0 or time.monotonic() >= deadline):
                    return
                if output.first_error is not None:  # a record failed: its mark (or the commit point) is never reached
                    log.critical("output_failed_exiting", failures=output.failures, error=output.first_error)
                    os._exit(EXIT_OUTPUT_FAILED)  # no event of that batch left, nothing committed past it
                output.changelog.poll(0.01)
                continue
            held.popleft()
            if self._point is not None:
                self._point.released()
            self._produce_events(outs)
        self._advance_commit()

    def _produce_events(self, outs: list[tuple[bytes, bytes | None, int]]) -> None:
        produce = self.output.main.produce
        events_topic = self.settings.events_topic
        for out, key, partition in outs:
            try:
                produce(events_topic, out, key, partition)
            except BufferError:
                self.output.produce(events_topic, key, out, partition)

    # --- commit protocol --------------------------------------------------------------------------------------
    def _begin_commit(self) -> None:
        """Take an interval commit point (:mod:`dedup_stream.commit_point`); the loop reads on meanwhile."""
        if self._point is not None or not self._positions:
            return  # one point at a time: frames processed meanwhile go with the next one
        self._point = CommitPoint(dict(self._positions), self.output.changelog_mark(), len(self._held))
        self._positions.clear()
        self._advance_commit()

    def _advance_commit(self) -> bool:
        """Commit the pending commit point once everything before it is acknowledged. True when no point holds events
        back (none is pending, or batches before it are still to go out)."""
        point, output = self._point, self.output
        if point is None or point.admits_events():
            return True
        if not point.ready(output.changelog_acked(point.changelog_mark), output.events_unacked()):
            return False
        if output.first_error is not None:
            log.critical("output_failed_exiting", failures=output.failures, error=output.first_error)
            os._exit(EXIT_OUTPUT_FAILED)  # nothing committed past the failed output
        self._point = None
        self._store_covered()
        assert self._consumer is not None
        offsets = [TopicPartition(topic, part, offset + 1) for (topic, part), offset in point.offsets.items()]
        self._issued.update(point.offsets)
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)  # the result: _on_commit
        except KafkaException as exc:  # refused before it was sent (e.g. no longer assigned): the next one carries it
            self._commit_failed(exc.args[0], point.offsets)
        return True

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of an interval (asynchronous) commit: a whole or per-partition failure."""
        if error is not None and error.code() == KafkaError._NO_OFFSET:
            return
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if failed:
            self._commit_failed(error or failed[0].error, {(tp.topic, tp.partition): tp.offset - 1 for tp in failed})

    def _commit_failed(self, error: KafkaError, offsets: dict[tuple[str, int], int]) -> None:
        """An interval commit failed: a lost generation or a transient error is carried by the next commit (merged
        back); any other error stops the worker, as a synchronous commit's does (raised from the loop), rather than
        run on and never commit."""
        code = error.code()
        if code not in _LOST_GENERATION and code not in _RETRIABLE_COMMIT and not error.retriable():
            log.critical("commit_failed_exiting", error=str(error))
            if self._callback_error is None:
                self._callback_error = KafkaException(error)
            return
        merged = merge_back(self._positions, offsets, self._issued)
        log.warning("commit_failed_retried_next", error=str(error), partitions=len(merged))

    def _store_covered(self) -> None:
        """Store the acknowledged changelog offsets in the partition DBs (where a restore starts)."""
        for partition, offset in self.output.delivered.items():
            if partition in self.states.dbs:
                self.states.set_covered(partition, offset)
        self.output.delivered.clear()

    def _commit(self, consumer: Consumer) -> None:
        point, self._point = self._point, None
        if point is not None:  # its frames go with this commit (positions processed since are newer)
            for tp, offset in point.offsets.items():
                self._positions.setdefault(tp, offset)
        if self._held:
            if self.output.changelog.flush(_FLUSH_TIMEOUT_S) and self.output.first_error is None:
                self.output.first_error = "changelog records still undelivered after flush"
            self._release(math.inf)
        error = self.output.flush(_FLUSH_TIMEOUT_S)
        if error is not None:
            log.critical("output_failed_exiting", failures=self.output.failures, error=error)
            os._exit(EXIT_OUTPUT_FAILED)  # nothing committed past the failed output
        self._store_covered()
        if not self._positions:
            return
        offsets = [TopicPartition(topic, part, offset + 1) for (topic, part), offset in self._positions.items()]
        self._issued.update(self._positions)
        deadline = time.monotonic() + _COMMIT_RETRY_S
        while True:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)  # processed frames only
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                code = error.code()
                if code in _LOST_GENERATION:  # partitions already moved: their next owner re-reads (and re-emits)
                    log.warning("commit_refused_by_rebalance", error=str(error))
                elif code in _RETRIABLE_COMMIT or error.retriable():
                    if time.monotonic() < deadline:
                        log.warning("commit_retrying", error=str(error))
                        time.sleep(0.5)
                        continue
                    # positions are kept: the next commit carries them (or the next owner re-reads them)
                    log.error("commit_failed_retriable_giving_up", error=str(error), retried_s=_COMMIT_RETRY_S)
                    return
                elif code != KafkaError._NO_OFFSET:
                    raise
            break
        self._positions.clear()

    # --- per frame --------------------------------------------------------------------------------------------
    def _dead_letter(self, msg: Message, reason: str, payload: bytes | None = None) -> None:
        """Send a raw record, or with ``payload`` one frame of its bundle, to the dead-letter topic."""
        letter = DeadLetter(
            stage="dedup",
            reason=reason,
            payload=(msg.value() if payload is None else payload) or b"",
            source_topic=msg.topic(),
            source_partition=msg.partition(),
            source_offset=msg.offset(),
            at_ns=time.time_ns(),
        )
        self.output.produce(self.settings.dlq_topic, msg.key(), encode_dead_letter(letter))

    def _process(self, msgs: list[Message], read_ns: int = 0, wait_s: float = 0.0) -> int:
        """Decide a consumed batch, write its state, then hold its events until its changelog is acknowledged (wait for
        that here up to ``wait_s`` seconds, handing them to the producer before returning if it came). Returns the
        frames decided: a bundle record carries several (:mod:`schemas.raw_record`), each decided in its order with
        its own origin (:func:`~schemas.raw_record.frame_origin`) and its events keyed by its own market.

        ``read_ns``: when consume() returned the batch (wall clock), stamped on its events with each winning raw
        record's Kafka timestamp (:mod:`schemas.events` hop stamps).

        The state of the whole batch reaches RocksDB (its WAL) and the changelog *before* any of its events can
        leave the process: an event that was delivered always has its winner stored locally and in the changelog,
        so after a SIGKILL or a failover the replayed frame finds its own origin and the same copy is emitted again
        (never another gatherer's copy).
        """
        decide = self.deduper.decide_at
        owned = self._owned_set
        positions = self._positions
        outs: list[tuple[bytes, bytes | None, int]] = []
        frames = 0
        for msg in msgs:
            if msg.error() is not None:
                self._consumer_error(msg.error())
                continue
            partition = msg.partition()
            if partition not in owned:  # revoked while librdkafka was filling this batch: its next owner reads it
                continue
            topic, offset = msg.topic(), msg.offset()
            positions[topic, partition] = offset
            value = msg.value()
            if value and value[0] == BUNDLE_TAG:
                try:
                    values: list[bytes] | tuple[bytes | None] = split_bundle(value)
                except SchemaError as exc:  # counted as one invalid frame, as a plain record that does not decode
                    self.deduper.stats.invalid += 1
                    frames += 1
                    self._dead_letter(msg, str(exc))
                    continue
                origin = frame_origin(offset, 0)  # + the frame's index
                bundled = True
            else:
                values, origin, bundled = (value,), offset, False
            frames += len(values)
            for index, value in enumerate(values):
                decision = decide(value, topic, partition, origin + index)
                if decision is PLAIN_DUPLICATE:  # two of every three frames: counted by decide_at, nothing else to do
                    continue
                verdict = decision.verdict
                if verdict is Verdict.WON or verdict is Verdict.REEMIT or verdict is Verdict.GAP or verdict is _ALIAS:
                    if decision.weak:  # an alias record after a weak join
                        _log_weak(decision)
                    try:
                        out = decision_bytes(decision, msg.timestamp()[1], read_ns)
                    except Exception as exc:  # SchemaError, or a value the venue sent that cannot be represented
                        self.unmappable += 1
                        self._dead_letter(
                            msg, _in_bundle(f"normalise: {type(exc).__name__}: {exc}", bundled, index), value
                        )
                        continue
                    # a bundle is keyed by its first frame's market: each event by its own (the gatherer's key)
                    key = decision.frame.market.encode() if bundled else msg.key()  # type: ignore[union-attr]
                    outs.append((out, key, partition))
                elif verdict is Verdict.INVALID:
                    self._dead_letter(msg, _in_bundle(decision.error, bundled, index), value)
                elif decision.weak:
                    _log_weak(decision)
        self.states.flush()  # RocksDB, then the batch's changelog records in one burst
        if outs:
            self._held.append((self.output.changelog_mark(), outs))
        self._release(wait_s)
        self.events_out += len(outs)
        return frames

    def _next_batch(self, consumer: Consumer, batch: int) -> list[Message]:
        """Wait for the first frame (at most ``_IDLE_POLL_S``, or ``_HELD_POLL_S`` while events are held), then take
        what else is already queued, up to ``batch`` frames."""
        first = consumer.poll(_HELD_POLL_S if self._held or self._point else _IDLE_POLL_S)
        if first is None:
            return []
        if batch == 1:
            return [first]
        msgs = consumer.consume(batch - 1, 0)
        msgs.insert(0, first)
        return msgs

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer_error", error=str(error))

    # --- loop -------------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.frames and self.last_cpu_frames != self.frames:
            self.last_cpu_frames, self.last_cpu = self.frames, time.process_time()
        self.deduper.tick()
        if self._reset_watch.resets:
            self._report_resets()
        self._match_ages.append(self.deduper.stats.take_interval())
        self._last_match_age = max(self._match_ages)

    last_cpu_frames = 0

    def _idle_done(self, consumer: Consumer) -> bool:
        """``exit_when_idle``: every assigned raw partition is read up to its high-water mark."""
        tps = consumer.assignment()
        if not tps:
            return False
        positions = consumer.position(tps)
        committed = consumer.committed(tps, timeout=15)
        for pos, com in zip(positions, committed, strict=True):
            low, high = consumer.get_watermark_offsets(TopicPartition(pos.topic, pos.partition), timeout=15)
            if not caught_up(pos.offset, com.offset, low, high):
                return False
        return True

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run(self, loglevel: str = "info") -> int:
        """Run until SIGTERM/SIGINT (or idle, with ``exit_when_idle``); returns an exit status."""
        s = self.settings
        register(self.collector)
        ensure_changelog(self.client_conf, self.changelog_topic, s.partitions, s.replication_factor, s.window_s)
        self._restorer = ChangelogRestorer(self.client_conf, self.changelog_topic)
        consumer = Consumer(
            {
                **self.client_conf,
                "group.id": s.app_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,  # commits name the frames processed (see _commit)
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                "session.timeout.ms": int(s.config.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(min(3.0, s.config.session_timeout_s / 3) * 1000),
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 8 << 20,
                "queued.max.messages.kbytes": 256 << 10,
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,  # see mdpipe.kafka
                "fetch.wait.max.ms": s.config.fetch_wait_ms,
                "fetch.min.bytes": s.config.fetch_min_bytes,
                **({"group.instance.id": s.static_member_id} if s.static_member_id else {}),
                "client.id": f"mdpipe-dedup-{Path(s.workdir).name}",  # names the member in `mdpipe status`
                "statistics.interval.ms": 1000,  # offsets for the consumer-lag gauges (dedup_stream.lag)
                "stats_cb": self.raw_lag.update,
                "on_commit": self._on_commit,
                "logger": self._reset_watch,  # librdkafka reports reset fetch positions on its log only (expiry)
            }
        )
        self._consumer = consumer
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        consumer.subscribe(s.raw_topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._running = True
        batch = BATCH_FRAMES
        since_commit = 0
        last_commit = last_tick = last_idle_check = time.monotonic()
        try:
            while not self._stopping:
                msgs = self._next_batch(consumer, batch)
                read_ns = time.time_ns()
                if self._callback_error is not None:  # before any record of a partition it could not prepare
                    raise self._callback_error
                now = time.monotonic()
                if msgs:
                    if self.first_frame is None:
                        self.first_frame, self.first_cpu = now, time.process_time()
                    # a full batch means a backlog: decide the next one while this one's changelog is in flight;
                    # otherwise wait a little (_ACK_WAIT_S) for the acknowledgements and let the events go now
                    frames = self._process(msgs, read_ns, wait_s=_ACK_WAIT_S if len(msgs) < batch else 0.0)
                    self.raw_lag.consumed(msgs[-1].timestamp()[1])
                    self.frames += frames
                    self.batches += 1
                    since_commit += frames
                    batch = _batch_records(frames, len(msgs))
                    self.last_frame = time.monotonic()
                    self.output.poll()
                elif self._held or self._point:
                    self._release(0.0)
                if since_commit and (
                    since_commit >= s.config.commit_every
                    or now - last_commit >= s.config.commit_interval_s
                    or (not msgs and s.exit_when_idle)
                ):
                    if not msgs and s.exit_when_idle:
                        self._commit(consumer)
                    else:
                        self._begin_commit()
                    since_commit, last_commit = 0, time.monotonic()
                    if not msgs:
                        self.last_frame = last_commit  # busy time includes delivering the last frames' output
                if now - last_tick >= 1.0:
                    self._tick()
                    last_tick = now
                if (
                    s.exit_when_idle
                    and not msgs
                    and now - self.last_frame >= s.idle_s
                    and now - last_idle_check >= s.idle_s / 2
                ):
                    last_idle_check = now
                    if self._idle_done(consumer):
                        log.info("dedup_idle_exit", partitions=len(self._owned), events_out=self.events_out)
                        break
            self._tick()
            if self._owned:
                self._commit(consumer)
        except Exception as exc:
            log.critical("dedup_worker_failed", error=repr(exc))
            # nothing is committed past this point: a restart re-reads from the last commit
            os._exit(1 if isinstance(exc, CoPartitionError) else EXIT_OUTPUT_FAILED)
        finally:
            self._stopping = True
        consumer.close()  # leaves the group (revocation commits again: nothing new, cheap)
        self._restorer.close()
        self._close_states()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 0


def build_worker(settings: DedupSettings) -> NativeWorker:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    return NativeWorker(settings)
