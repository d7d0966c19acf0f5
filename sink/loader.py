"""The sink's Kafka side: a confluent-kafka consumer group on ``events`` (+ ``markets``) feeding batches to the store.

Exactly-once into the database: offsets live in ``sink_offsets`` and are written in the same transaction as the
rows; on assignment the consumer seeks to them (Kafka's own committed offsets are only updated afterwards, for
monitoring tools). A revoke drops the uncommitted batch (the new owner, or we, re-read it from the stored
offsets). A database outage keeps the batch in memory and retries it with capped exponential back-off.

Throughput: the consumer thread decodes and encodes (in C, :mod:`sink.rowcodec`; optionally with
:mod:`sink.helper` taking part of each chunk) while writer threads commit earlier batches (psycopg releases the
GIL while PostgreSQL ingests); a due batch keeps growing while its writer is busy (:mod:`sink.flush`).
``sink.writers`` lanes, each a batch + a writer thread + its own connection, split the assigned partitions
between them (round robin per topic): PostgreSQL ingests on that many backends at once, and each lane's
transactions hold only its own partitions' rows and offsets, so exactly-once holds per partition as with
several sink processes. The mapping changes only on a rebalance, after every writer went idle.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from mdpipe.config import Config, ConfigError
from mdpipe.failures import Failure, database_error_is_fatal, database_failure
from mdpipe.kafka import consumer_config, expired_unread, log_starts, producer_config
from mdpipe.logging import get_logger, log_client_error
from mdpipe.topics import topic_names
from schemas import DeadLetter
from sink import metrics as m
from sink.batch import Batch
from sink.dead_letters import DeadLetters
from sink.flush import ARRIVAL_GRACE_S, flush_due, merge_due, next_commit_slot, opened_at, poll_timeout
from sink.health import sink_healthy
from sink.helper import RowHelper
from sink.markets_seen import MarketsSeen
from sink.rowcodec import resolve as resolve_codec
from sink.store import Store, WriteResult, connect_options
from sink.trace import HopTrace

__all__ = ["LoadStats", "Loader"]

log = get_logger(__name__)
# longest single wait for records: keeps stop, lag and idle checks responsive. Not a latency cost: the wait of an empty
# batch returns at its first record (Loader._first_records), that of a pending batch when its batch_ms is up
# (sink.flush.poll_timeout)
MAX_POLL_S = 0.25
REPLAY_SEEK_SLACK_MS = 60_000  # Kafka timestamps trail venue times: seek this much before --from-ts
_EXPIRY_CHECK_S = 5.0  # at most this long per assignment asking the broker for log starts (_check_expired)


@dataclass
class LoadStats:
    rows: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    markets: int = 0
    dropped: int = 0  # consumed but uncommitted records dropped on a revoke (re-read by the new owner)
    expired: int = 0  # records deleted before they were read, past a stored offset (_check_expired)
    first_msg_at: float = 0.0  # monotonic time the first record was consumed
    last_commit_at: float = 0.0  # monotonic time of the last commit
    first_msg_cpu: float = 0.0  # process CPU time (all threads) at first_msg_at
    last_commit_cpu: float = 0.0  # process CPU time at last_commit_at
    helper_cpu_s: float = 0.0  # CPU the row helper process spent building rows (all of it while busy)

    @property
    def busy_s(self) -> float:
        """From the first consumed record to the last commit (start-up and idle waits excluded)."""
        return max(0.0, self.last_commit_at - self.first_msg_at)

    @property
    def busy_cpu_s(self) -> float:
        """CPU seconds the sink used over :attr:`busy_s` (every thread, librdkafka's included, and the row
        helper process)."""
        return max(0.0, self.last_commit_cpu - self.first_msg_cpu) + self.helper_cpu_s


class _Writer:
    """A background thread committing one batch while the consumer thread decodes the next.

    One slot: :meth:`submit` waits until the previous batch is committed, so at most one batch is being
    written and one built. psycopg releases the GIL while the server ingests the COPY, so decoding overlaps it.
    """

    def __init__(self, write: Callable[[Batch], None], name: str = "sink-writer") -> None:
        self._write = write
        self._cv = threading.Condition()
        self._pending: Batch | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        return not self._busy

    def submit(self, batch: Batch) -> None:
        with self._cv:
            while self._busy and self._error is None:
                self._cv.wait(0.5)
            self._raise()
            self._pending, self._busy = batch, True
            self._cv.notify_all()

    def wait_idle(self) -> None:
        with self._cv:
            while self._busy and self._error is None:
                self._cv.wait(0.5)
            self._raise()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(60)

    def check(self) -> None:
        """Raise the writer's failure, if it had one (the consumer thread calls it every round)."""
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError("sink writer failed") from self._error

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._pending is None:
                    return
                batch, self._pending = self._pending, None
            try:
                self._write(batch)
            except Failure as exc:  # expected (the database refusing the login): the CLI's one line says it
                self._error = exc
            except BaseException as exc:
                log.exception("writer_failed")
                self._error = exc
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()


@dataclass
class _Lane:
    """One database connection's share of the assigned partitions: the batch being built, its writer thread."""

    index: int
    store: Store
    batch: Batch
    writer: _Writer
    batches: int = 0  # batches this lane committed
    slot: float = float("-inf")  # commit slot (sink.flush.next_commit_slot) after its last batch went to a writer


class Loader:
    """One sink process: consume, batch, write (rows + offsets in one transaction per lane), repeat."""

    def __init__(
        self, config: Config, *, from_ms: int | None = None, to_ms: int | None = None, exit_when_idle: bool = False
    ) -> None:
        """Settings come from ``config.sink`` (group, batch size and time, instance id: the CLI folds its flags in);
        ``from_ms``/``to_ms`` bound a replay (Unix ms) and ``exit_when_idle`` stops once caught up."""
        if not config.kafka.bootstrap_servers:
            raise ConfigError("config setting kafka.bootstrap_servers: empty (run `mdpipe infra up` or set it)")
        if not config.postgres.dsn:
            raise ConfigError("config setting postgres.dsn: empty (run `mdpipe infra up` or set it)")
        self.config = config
        self.from_ms, self.to_ms, self.exit_when_idle = from_ms, to_ms, exit_when_idle
        group_id = config.sink.group_id
        names = topic_names(config)
        self.dlq_topic = names.dlq
        replay = self._replay = from_ms is not None or to_ms is not None
        self.topics = [names.events] + ([names.markets] if config.sink.load_markets and not replay else [])
        db_options = connect_options(config.sink)
        self.meta_store = Store(config.postgres.dsn, group_id, options=db_options)  # offsets on assignment
        self._names = names
        self.helper = RowHelper(config.sink.helper_share) if config.sink.helper_share > 0 else None
        self.fast_build = resolve_codec(config.sink.row_codec)
        self._done: collections.deque[dict[tuple[str, int], int]] = collections.deque()
        self._mirror: dict[tuple[str, int], int] = {}  # committed offsets not yet mirrored to Kafka
        self._mirrored_at = 0.0
        self._mirror_interval_s = config.sink.kafka_commit_interval_ms / 1000.0
        self.lanes: list[_Lane] = []
        self.markets_seen = MarketsSeen()  # one for every lane: a merged batch may carry any lane's markets
        for i in range(config.sink.writers):
            store = Store(config.postgres.dsn, group_id, options=db_options, markets_seen=self.markets_seen)
            writer = _Writer(lambda batch, i=i: self._write(self.lanes[i], batch), name=f"sink-writer-{i}")
            self.lanes.append(_Lane(i, store, self._new_batch(), writer))
        self._lane_of: dict[tuple[str, int], _Lane] = {}  # assigned partition -> its lane
        self._merged_in: _Writer | None = None  # the writer committing a merged batch (all lanes'), until it is idle
        self._stats_lock = threading.Lock()  # writer threads account their batches concurrently
        self.stats = LoadStats()
        self.stop_event = threading.Event()
        self._revokes = 0  # rebalances that took partitions away (see _resync)
        self._starts: dict[tuple[str, int], int] = {}
        self._assignment: list[TopicPartition] = []
        self._committed: dict[tuple[str, int], int] = {}
        self._last_ts_ms = 0
        self._last_lag_update = 0.0
        self._high_marks: dict[tuple[str, int], int] = {}
        self._lag_series: set[tuple[str, int]] = set()  # partitions with a LAG_RECORDS series exported
        self._stats_at = 0.0  # monotonic time of the last statistics callback
        self._db_failing: set[int] = set()  # ids of the stores whose last call failed (an outage being retried)
        static = {"group.instance.id": config.sink.instance_id} if config.sink.instance_id else {}
        self.consumer = Consumer(
            {
                **consumer_config(config.kafka, group_id),
                **static,  # a restarted sink takes its partitions back at once (see sink.instance_id)
                "enable.auto.offset.store": False,
                "session.timeout.ms": config.sink.session_timeout_ms,
                "heartbeat.interval.ms": max(500, config.sink.session_timeout_ms // 4),
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",
                "statistics.interval.ms": 1000,
                "stats_cb": self._on_stats,  # high watermarks for the lag gauges (no broker round trip)
                "client.id": "mdpipe-sink",  # names the member (with its host) in `mdpipe status`
                "fetch.max.bytes": 64 * 1024 * 1024,
                "fetch.min.bytes": config.sink.fetch_min_bytes,
                "fetch.wait.max.ms": config.sink.fetch_wait_max_ms,
                "queued.max.messages.kbytes": 256 * 1024,
            }
        )
        self.dead_letters = DeadLetters(producer_config(config.kafka, linger_ms=5), self.dlq_topic)
        self.trace = HopTrace(config.sink.hop_trace) if config.sink.hop_trace else None  # see sink.trace

    def _new_batch(self) -> Batch:
        return Batch(
            self._names.events,
            self._names.markets,
            self.from_ms,
            self.to_ms,
            helper=self.helper,
            fast=self.fast_build,
            runs=[] if self.config.sink.hop_trace else None,
            stamps=None if self._replay else bytearray(),  # replays load old events: no latency to observe
        )

    # -- public ------------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records consumed and not yet handed to a writer (every lane's batch)."""
        return sum(lane.batch.size for lane in self.lanes)

    def healthy(self) -> bool:
        """/healthz: the database answers and no call to it (a batch's write, an offsets lookup) is stuck."""
        stores = [lane.store for lane in self.lanes] + [self.meta_store]
        busy = [s.busy_since for s in stores if s.busy_since > 0.0]
        db_ok = not self._db_failing
        return sink_healthy(db_ok, min(busy, default=0.0), time.monotonic(), self.config.sink.max_write_s)

    def _writers_idle(self) -> bool:
        return all(lane.writer.idle for lane in self.lanes)

    def _wait_writers(self) -> None:
        for lane in self.lanes:
            lane.writer.wait_idle()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> LoadStats:
        """Consume until :meth:`stop` (or, with ``exit_when_idle``, until caught up); returns totals."""
        self._check_partitions()
        self.consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        log.info(
            "sink_started",
            group=self.config.sink.group_id,
            topics=self.topics,
            batch_rows=self.config.sink.batch_rows,
            instance_id=self.config.sink.instance_id or None,
            writers=len(self.lanes),
            row_codec="c" if self.fast_build is not None else "python",
        )
        idle_since: float | None = None
        deadline_s = self.config.sink.batch_ms / 1000.0
        try:
            while not self.stop_event.is_set():
                revokes = self._revokes
                now = time.monotonic()
                largest = max(lane.batch.size for lane in self.lanes)
                want = max(1, min(10_000, self.config.sink.batch_rows - largest))
                timeout = min(
                    poll_timeout(lane.batch.size, now - lane.batch.started if lane.batch.size else 0.0, deadline_s,
                                 MAX_POLL_S)
                    for lane in self.lanes
                )  # fmt: skip
                if largest:
                    arrived = time.monotonic()  # consume() holds what arrives until `want` or the timeout
                    msgs = self.consumer.consume(want, timeout)
                else:
                    msgs, arrived = self._first_records(want, timeout)
                read_ns = time.time_ns()
                if revokes != self._revokes:
                    self._resync()
                    continue
                good = [msg for msg in msgs if msg.error() is None]
                if len(good) != len(msgs):
                    for msg in msgs:
                        if msg.error() is not None:
                            self._kafka_error(msg.error())
                self._route(good, read_ns, arrived)
                if msgs:
                    if not self.stats.first_msg_at:
                        self.stats.first_msg_at = time.monotonic()
                        self.stats.first_msg_cpu = time.process_time()
                    self._last_ts_ms = msgs[-1].timestamp()[1]
                    idle_since = None
                now = time.monotonic()
                for lane in self.lanes:
                    lane.writer.check()  # a writer that gave up (refused login) stops the sink now, not at a next batch
                sizes = [lane.batch.size for lane in self.lanes]
                ages = [now - lane.batch.started for lane in self.lanes]
                if merge_due(sizes, ages, self.config.sink.batch_rows, deadline_s, self._writers_idle()):
                    self._flush_merged()
                else:
                    for lane, size, age in zip(self.lanes, sizes, ages, strict=True):
                        if flush_due(size, age, self.config.sink.batch_rows, deadline_s, self._lane_idle(lane)):
                            self._flush(lane)
                self._committed_offsets()
                self._update_lag()
                if self.exit_when_idle and not msgs and not self.pending and self._writers_idle():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= self.config.sink.idle_exit_s:
                        idle_since = time.monotonic()  # check at most once per idle_exit_s
                        if not self._caught_up(fresh_after=idle_since - self.config.sink.idle_exit_s):
                            continue
                        log.info("sink_idle_exit", rows=self.stats.rows)
                        break
            if self._assignment:
                for lane in self.lanes:
                    if lane.batch.size:
                        self._flush(lane)
            self._wait_writers()
            self._committed_offsets(force=True)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        for lane in self.lanes:
            with contextlib.suppress(RuntimeError):
                lane.writer.wait_idle()
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        for lane in self.lanes:
            lane.writer.close()
        self.dead_letters.flush(5)
        for lane in self.lanes:
            lane.store.close()
        self.meta_store.close()
        if self.trace is not None:
            self.trace.close()
        if self.helper is not None:
            self.helper.close()

    # -- rebalance ---------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp)
        stored: dict[tuple[str, int], int] = {}
        for topic, tps in by_topic.items():
            found = self._retry_db(
                lambda t=topic, ps=tps: self.meta_store.read_offsets(t, [p.partition for p in ps]), self.meta_store
            )
            if found is None:  # stopping
                return
            stored.update({(topic, p): o for p, o in found.items()})
        self._check_expired(consumer, stored)
        replay_seek = [
            TopicPartition(tp.topic, tp.partition, self.from_ms - REPLAY_SEEK_SLACK_MS)
            for tp in partitions
            if (tp.topic, tp.partition) not in stored and self.from_ms is not None
        ]
        by_time = {}
        if replay_seek:
            for tp in consumer.offsets_for_times(replay_seek, timeout=10):
                by_time[(tp.topic, tp.partition)] = tp.offset
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in stored:
                tp.offset = stored[key]
            elif key in by_time and by_time[key] >= 0:
                tp.offset = by_time[key]
            else:
                tp.offset = OFFSET_BEGINNING if key not in by_time else self._high(tp)
        consumer.assign(partitions)
        self._assignment = list(partitions)
        self._lane_of = lanes_for(partitions, self.lanes)
        self._starts = {(tp.topic, tp.partition): tp.offset for tp in partitions}
        self._committed = {k: v for k, v in stored.items()}
        log.info("partitions_assigned", partitions=_fmt(partitions), stored=len(stored))

    def _check_expired(self, consumer: Consumer, stored: dict[tuple[str, int], int]) -> None:
        """Say how many records each assigned partition lost before this sink read them: its stored offset is below
        the partition's log start (retention ran while the sink was down or far behind). The consumer resets such
        a position to the oldest record left (``auto.offset.reset=earliest``), so without this the rows are
        missing with nothing said. A warning and ``mdpipe_sink_expired_records_total`` per loss; a broker that does
        not answer within the deadline leaves the rest unchecked, with a warning."""
        try:
            for topic, partition, low in log_starts(consumer, sorted(stored), _EXPIRY_CHECK_S):
                self._report_expired(topic, partition, stored[topic, partition], low)
        except KafkaException as exc:
            log.warning("expiry_check_failed", partitions=len(stored), error=str(exc))

    def _report_expired(self, topic: str, partition: int, offset: int, low: int) -> None:
        lost = expired_unread(offset, low)
        if lost:
            self.stats.expired += lost
            m.EXPIRED_RECORDS.labels(topic).inc(lost)
            log.warning("expired_unread", topic=topic, partition=partition, stored=offset, log_start=low, records=lost)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revokes += 1
        with contextlib.suppress(RuntimeError):
            self._wait_writers()  # the batches already handed to writers commit (or we are stopping)
        self._committed_offsets(force=True)  # mirror them while the partitions are still ours
        self.markets_seen.forget()  # the next owner of these partitions may change their markets meanwhile
        dropped = self.pending
        self.stats.dropped += dropped
        for lane in self.lanes:
            lane.batch.clear()
        self._assignment = []
        self._lane_of = {}
        self._starts = {}
        self._drop_lag_series(keep=set())
        log.info("partitions_revoked", partitions=_fmt(partitions), dropped_uncommitted=dropped)

    def _resync(self) -> None:
        """A revoke ran inside consume(): messages it returned from before the revoke belong to the old
        assignment (the batch they would join was dropped), so drop them all and, if partitions were assigned
        again within the same call, seek those back to where the assignment started."""
        for lane in self.lanes:
            lane.batch.clear()
        for (topic, partition), offset in self._starts.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:
                self.consumer.assign(self._assignment)
                break

    def _high(self, tp: TopicPartition) -> int:
        return int(self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1])

    # -- writing -----------------------------------------------------------------------------------------

    def _first_records(self, want: int, timeout: float) -> tuple[list[Any], float]:
        """Wait up to ``timeout`` for the first record of an empty batch and return as soon as it arrives, with what
        else arrives within :data:`~sink.flush.ARRIVAL_GRACE_S` (the rest of its fetch response), up to ``want``
        records; and the monotonic time the first arrived. consume() alone would hold it until ``want`` records or
        the timeout, however early it came."""
        first = self.consumer.poll(timeout)
        arrived = time.monotonic()
        if first is None:
            return [], arrived
        if want <= 1:
            return [first], arrived
        more = self.consumer.consume(want - 1, ARRIVAL_GRACE_S)
        more.insert(0, first)
        return more, arrived

    def _route(self, msgs: list[Any], read_ns: int = 0, arrived: float | None = None) -> None:
        """Add consumed messages to the batches of their partitions' lanes (consumption order kept per lane);
        ``arrived``: monotonic time the first of them reached the loader (opens an empty lane's batch:
        :func:`sink.flush.opened_at`)."""
        batch_s = self.config.sink.batch_ms / 1000.0
        if arrived is None:
            arrived = time.monotonic()
        if len(self.lanes) == 1:
            lane = self.lanes[0]
            lane.batch.add_many(msgs, read_ns, opened_at(arrived, lane.slot, batch_s))
            return
        lane_of = self._lane_of
        fallback = self.lanes[0]
        buckets: dict[int, list[Any]] = {}
        topic: str | None = None
        partition: int | None = None
        bucket: list[Any] = []
        for msg in msgs:
            p = msg.partition()
            t = msg.topic()
            if p != partition or t != topic:  # consume() returns runs of one partition
                topic, partition = t, p
                bucket = buckets.setdefault(lane_of.get((t, p), fallback).index, [])
            bucket.append(msg)
        for index, part in buckets.items():
            lane = self.lanes[index]
            lane.batch.add_many(part, read_ns, opened_at(arrived, lane.slot, batch_s))

    def _lane_idle(self, lane: _Lane) -> bool:
        """The lane may hand its batch over: its writer is idle, and no merged batch holding its partitions' earlier
        records is still being committed by another lane's writer."""
        merged = self._merged_in
        return lane.writer.idle and (merged is None or merged is lane.writer or merged.idle)

    def _flush(self, lane: _Lane) -> None:
        """Hand the lane's batch to its writer (waits while the lane's previous batch is still being committed, or
        a merged batch with earlier records of its partitions: its offsets must never commit before those rows)."""
        merged = self._merged_in
        if merged is not None and merged is not lane.writer:
            merged.wait_idle()
        self._merged_in = None
        batch, lane.batch = lane.batch, self._new_batch()
        lane.slot = next_commit_slot(lane.slot, time.monotonic(), self.config.sink.batch_ms / 1000.0)
        lane.writer.submit(batch)

    def _flush_merged(self) -> None:
        """Every lane's batch as one transaction on the first lane's connection (see :func:`sink.flush.merge_due`;
        every writer is idle)."""
        first = self.lanes[0]
        merged, first.batch = first.batch, self._new_batch()
        for lane in self.lanes[1:]:
            if lane.batch.size:
                batch, lane.batch = lane.batch, self._new_batch()
                merged.absorb(batch)
        self._merged_in = first.writer
        now, batch_s = time.monotonic(), self.config.sink.batch_ms / 1000.0
        for lane in self.lanes:
            lane.slot = next_commit_slot(lane.slot, now, batch_s)
        first.writer.submit(merged)

    def _write(self, lane: _Lane, batch: Batch) -> None:
        """Writer thread: commit ``batch`` (rows + offsets), retrying through database outages."""
        started = time.monotonic()
        result = self._retry_db(lambda: lane.store.write(batch, self._send_dead), lane.store)
        if result is None:  # stopping: nothing committed, the stored offsets still point before this batch
            return
        commit_ns = time.time_ns()
        if batch.stamps:
            m.VENUE_TO_DB.observe_batch(batch.stamps, commit_ns)
        if self.trace is not None and batch.runs:
            self.trace.write(batch.runs, commit_ns)
        self._account(batch, result, time.monotonic() - started)
        lane.batches += 1
        self._done.append(dict(batch.offsets))

    def _committed_offsets(self, force: bool = False) -> None:
        """Consumer thread: record what the writers committed; mirror it to Kafka for monitoring tools, at most
        every ``sink.kafka_commit_interval_ms`` (each mirror is an OffsetCommit the broker appends to
        ``__consumer_offsets``; the sink itself resumes from the offsets stored with the rows)."""
        while self._done:
            offsets = self._done.popleft()
            self._committed.update(offsets)
            self._mirror.update(offsets)
        now = time.monotonic()
        if not self._mirror or (not force and now - self._mirrored_at < self._mirror_interval_s):
            return
        mirror, self._mirror = self._mirror, {}
        self._mirrored_at = now
        owned = {(tp.topic, tp.partition) for tp in self._assignment}
        offsets = [TopicPartition(t, p, o) for (t, p), o in mirror.items() if (t, p) in owned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("kafka_commit_failed", error=str(exc))

    def _retry_db(self, fn: Any, store: Store) -> Any:
        delay = self.config.sink.backoff_initial_s
        while True:
            try:
                out = fn()
                if id(store) in self._db_failing:
                    self._db_failing.discard(id(store))
                    log.info("database_back")
                return out
            except psycopg.OperationalError as exc:
                m.DB_ERRORS.inc()
                self._db_failing.add(id(store))
                store.close()
                if database_error_is_fatal(exc):  # a refused login, a dropped database: waiting cannot fix it
                    raise database_failure(exc, self.config.postgres.dsn) from exc
                log.warning(
                    "database_unavailable", error=str(exc).strip().splitlines()[0] if str(exc) else "", retry_s=delay
                )
            if self.stop_event.wait(delay):
                return None
            delay = min(delay * 2, self.config.sink.backoff_max_s)

    def _send_dead(self, dead: list[DeadLetter]) -> None:
        self.dead_letters.send(dead)  # raises (retried like a database outage) unless every one is stored

    def _account(self, batch: Batch, result: WriteResult, elapsed: float) -> None:
        with self._stats_lock:
            self._account_locked(batch, result, elapsed)

    def _account_locked(self, batch: Batch, result: WriteResult, elapsed: float) -> None:
        total = 0
        for table, n in result.rows.items():
            m.ROWS.labels(table).inc(n)
            total += n
        if result.duplicates:
            m.DUPLICATES.inc(result.duplicates)
        if result.aliases:
            m.LIFECYCLE_ALIASES.inc(result.aliases)
        if result.delta_aliases:
            m.DELTA_ALIASES.inc(result.delta_aliases)
        for d in result.dead:
            m.DEAD_LETTERS.labels("undecodable" if d.reason.startswith("undecodable") else "rejected").inc()
        if result.slow_path:
            m.SLOW_BATCHES.inc()
        if result.markets:
            m.MARKETS.inc(result.markets)
        if result.markets_unchanged:
            m.MARKETS_UNCHANGED.inc(result.markets_unchanged)
        m.BATCH_ROWS.observe(batch.size)
        m.BATCH_SECONDS.observe(elapsed)
        self.stats.rows += total
        self.stats.duplicates += result.duplicates
        self.stats.dead += len(result.dead)
        self.stats.markets += result.markets
        self.stats.batches += 1
        self.stats.last_commit_at = time.monotonic()
        self.stats.last_commit_cpu = time.process_time()
        self.stats.helper_cpu_s = self.helper.cpu_s if self.helper is not None else 0.0

    # -- lag, idle, checks -------------------------------------------------------------------------------

    def _on_stats(self, stats_json: str) -> None:
        """librdkafka statistics (every second, served inside consume()): keep each partition's high watermark."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        for topic, t in stats.get("topics", {}).items():
            for part, info in t.get("partitions", {}).items():
                high = info.get("hi_offset", -1)
                if part != "-1" and high >= 0:
                    self._high_marks[(topic, int(part))] = high
        self._stats_at = time.monotonic()

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_update < 2.0:
            return
        self._last_lag_update = now
        waiting = 0
        owned = {(tp.topic, tp.partition) for tp in self._assignment}
        self._drop_lag_series(keep=owned)
        for key in owned:
            high, done = self._high_marks.get(key), self._committed.get(key)
            if high is None:
                continue
            lag = max(0, high - (done if done is not None else 0))
            waiting += lag
            m.LAG_RECORDS.labels(key[0], str(key[1])).set(lag)
            self._lag_series.add(key)
        m.LAG_SECONDS.set(max(0.0, time.time() - self._last_ts_ms / 1000.0) if waiting and self._last_ts_ms else 0.0)

    def _drop_lag_series(self, keep: set[tuple[str, int]]) -> None:
        """Remove the lag series of partitions this sink no longer owns (another member reports them now: a stale
        value here would be added to theirs by every sum over the group)."""
        for topic, partition in self._lag_series - keep:
            with contextlib.suppress(KeyError):
                m.LAG_RECORDS.remove(topic, str(partition))
        self._lag_series &= keep

    def _caught_up(self, fresh_after: float) -> bool:
        """Every assigned partition consumed up to its high watermark (and everything consumed is committed).

        Watermarks come from the statistics callback when one arrived after ``fresh_after`` (the broker
        reports them in every fetch response); otherwise from a ListOffsets request, which waits behind the
        consumer's long-poll fetch on the same connection."""
        if not self._assignment or self.pending or not self._writers_idle():
            return False
        for tp in self.consumer.position(self._assignment):
            key = (tp.topic, tp.partition)
            high = self._high_marks.get(key) if self._stats_at > fresh_after else None
            if high is None:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
            else:
                low = 0
            pos = tp.offset if tp.offset >= 0 else self._committed.get(key, low)
            if pos < high:
                return False
        return True

    def _check_partitions(self) -> None:
        meta = self.consumer.list_topics(timeout=15)
        for topic in self.topics:
            t = meta.topics.get(topic)
            if t is None or t.error is not None:
                raise ConfigError(f"kafka topic missing: {topic} (create it with `mdpipe topics create`)")
            if len(t.partitions) != self.config.kafka.partitions:
                log.warning(
                    "partitions_differ_from_config",
                    topic=topic,
                    topic_partitions=len(t.partitions),
                    config=self.config.kafka.partitions,
                )

    def _kafka_error(self, err: Any) -> None:
        # a fatal consumer error (e.g. fenced by a sink with the same group.instance.id) arrives as a message error
        # with code _FATAL whose fatal() is False: the consumer is unusable from then on
        if err.fatal() or err.code() == KafkaError._FATAL:
            raise KafkaException(err)
        log_client_error(log, "kafka_error", err)  # rate-limited: an outage repeats it every ~100 ms


def lanes_for(partitions: list[TopicPartition], lanes: list[_Lane]) -> dict[tuple[str, int], _Lane]:
    """Each assigned partition's lane: round robin over the partitions of each topic in partition order (so a
    topic's partitions spread evenly whatever the assignment)."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return {(topic, p): lanes[i % len(lanes)] for topic, ps in by_topic.items() for i, p in enumerate(sorted(ps))}


def _fmt(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)
