"""Faust wiring of the dedup stage: raw.<gatherer> topics -> first-copy-wins -> ``events`` (and ``dlq``).

This is the ``--engine faust`` worker; the default engine is :mod:`dedup_stream.native` (same decision, state
layout and changelog name, about 7x the frames per second, see bench/dedup).

One agent consumes every raw topic. The raw topics are co-partitioned by market (same partition count,
murmur2), so Faust's assignor gives partition *i* of all of them, and partition *i* of the state table's
changelog, to the same worker: no repartition topic. The decision itself is :mod:`dedup_stream.logic`;
this module adapts the Faust table to its ``Store`` protocol and does the I/O.

State: a plain Faust table ``seen`` (RocksDB via rocksdict, raw bytes keys/values) with a RocksDB TTL of
``window_s`` and a ``compact,delete`` changelog whose retention is also ``window_s``. Why not a windowed
table: Faust's windowed tables keep every live key in a Python heap (about 0.4 KB per key, i.e. GBs for an
hour of a busy venue), expire by wall clock anyway, never expire keys restored after a restart (faust #385),
and each lookup would have to probe two windows. Measured check+set rates (no broker, shared/faust-notes.md):
windowed RocksDB about 35k/s against 59k/s for plain RocksDB; measured here (bench/dedup/logic_only.py), the
whole decision on a rocksdict TTL store runs at about 46k frames/s on a loaded 2-core machine. TTL expiry is
lazy (at compaction), which can only make a key live longer than ``window_s``: a late copy is then still
recognised, never the reverse. The changelog's ``compact,delete`` retention bounds what a new worker restores.

Replay safety: local RocksDB is written when a frame is decided, but input offsets are committed only after
the producer (events and changelog batches included) is flushed. The table value is the origin
``(topic, partition, offset)`` of the accepted copy, so a frame re-read after a crash that finds its own
origin is emitted again (see ``logic.Deduper``); the sink's unique key absorbs the repeat.

State before events (as in the native engine): event batches go to the producer only after every changelog batch
written before them is acknowledged (:class:`OutputBatcher` ``after=``), and a re-emit writes its winner to the
changelog again (``logic.Deduper``). An event that reached the broker therefore always has its winner in the
changelog, so a worker restoring the partition after a crash or a failover keeps the same winner. Gap reports are
forwarded as coverage records, like the native engine (:func:`dedup_stream.normalise.decision_bytes`).

Bundles (:mod:`schemas.raw_record`): a raw record may carry several frames. Each is decided in order with its own
origin (:func:`~schemas.raw_record.frame_origin` of the record's offset and its index) and its event is keyed by its
own market (a bundle is keyed by its first frame's); a frame that is invalid goes to the dead-letter topic alone, a
bundle that does not split goes there whole. Input offsets, and ``done``, stay per record.

Output goes to the same partition number as the input (the events topic has the same partition count and
the same key, so this is what murmur2 would pick, without hashing again).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from typing import Any

import faust
from faust.types import TP

from dedup_stream.faust_recovery import install as install_recovery
from dedup_stream.logic import Decision, Deduper, Origin, Verdict, weak_match_fields
from dedup_stream.metrics import DedupCollector, register
from dedup_stream.normalise import decision_bytes
from dedup_stream.output import EXIT_OUTPUT_FAILED, OutputBatcher
from dedup_stream.settings import DedupSettings
from mdpipe.logging import get_logger
from schemas import DeadLetter, SchemaError, encode_dead_letter
from schemas.raw_record import frame_origin, is_bundle, split_bundle

__all__ = ["DedupApp", "DedupSettings", "TableStore", "build_app"]

log = get_logger(__name__)


def log_weak(decision: Decision) -> None:
    log.info("weak_match", **weak_match_fields(decision))


TABLE_NAME = "seen"

# The Faust engine's own cadences and sizes (dedup.commit_interval_s, commit_every and linger_ms are the native
# engine's): offsets committed every 2 s or 20,000 acknowledged records; up to 5,000 records a poll and 65,536 in a
# stream's buffer; output batches (and take_events) wait at most 20 ms.
COMMIT_INTERVAL_S = 2.0
COMMIT_EVERY = 20_000
MAX_POLL_RECORDS = 5000
STREAM_BUFFER = 65536
LINGER_S = 0.02


class TableStore:
    """The Faust table's RocksDB partitions as a :class:`dedup_stream.logic.Store`.

    Faust still owns the table: it creates the changelog topic, assigns and recovers partitions (replaying
    the changelog into local RocksDB from the persisted offset) and serves standbys. The hot path bypasses
    its per-key machinery, which profiles showed at about 12% of the worker's CPU (serializers, sensors,
    one FutureMessage and a buffered send per write): reads and writes go straight to the partition's
    rocksdict handle, and changelog records go through an :class:`OutputBatcher` whose delivery callback
    records the persisted changelog offset exactly as Faust's own ``_on_changelog_sent`` does.
    """

    def __init__(self, table: Any, changelog: OutputBatcher | None = None) -> None:
        self.table = table
        self.data = table.data  # faust.stores.rocksdb.Store
        self.changelog = changelog

    def get(self, key: bytes, partition: int) -> bytes | None:
        value: bytes | None = self.data._db_for_partition(partition).get(key)
        return value

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.data._db_for_partition(partition).put(key, value)
        if self.changelog is not None:
            self.changelog.append(partition, key, value)

    def persisted(self, partition: int, offset: int) -> None:
        """Delivery callback of the changelog batches: remember how far the changelog covers local state."""
        self.data.set_persisted_offset(TP(self.table.changelog_topic.get_topic_name(), partition), offset)


class _LeanApp(faust.App):
    """faust.App without its Monitor sensor on the per-event path.

    The Monitor keeps per-event timing statistics for Faust's web views, which this stage disables; it cost
    about 3% of the worker's CPU in profiles. Faust still calls it directly for commit and end offsets.
    """

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return deps


class DedupApp:
    """The Faust app of one worker plus its counters (``build_app`` creates it; ``run`` runs it)."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings
        s = settings
        self.faust = _LeanApp(
            s.app_id,
            broker=";".join(f"kafka://{host}" for host in s.bootstrap_servers.split(",")),
            store="rocksdb://",
            datadir=str(s.workdir),
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            table_standby_replicas=s.config.standby_replicas,
            processing_guarantee="at_least_once",
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=s.config.session_timeout_s,
            broker_heartbeat_interval=min(3.0, s.config.session_timeout_s / 3),
            broker_commit_every=COMMIT_EVERY,
            broker_commit_interval=COMMIT_INTERVAL_S,
            broker_max_poll_records=MAX_POLL_RECORDS,
            stream_buffer_maxsize=STREAM_BUFFER,
            producer_linger=LINGER_S,
            producer_max_batch_size=256 * 1024,
            consumer_max_fetch_size=4 * 1024 * 1024,
            producer_compression_type=None if s.compression == "none" else s.compression,
            stream_recovery_delay=0.0,
        )
        app = self.faust
        install_recovery(app)  # the end of a rebalance must not drop raw records (dedup_stream.faust_recovery)
        raw_opts: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        raw_opts |= {"key_serializer": "raw", "value_serializer": "raw"}
        self.raw = app.topic(*s.raw_topics, partitions=s.partitions, **raw_opts)
        self.events = app.topic(s.events_topic, partitions=s.partitions, **raw_opts)
        self.dlq = app.topic(s.dlq_topic, **raw_opts)
        window_ms = int(s.window_s * 1000)
        self.table = app.Table(
            TABLE_NAME,
            partitions=s.partitions,
            key_type=bytes,
            value_type=bytes,  # bytes key/value types give the raw codec
            options={
                "ttl": max(1, int(s.window_s)),
                "write_buffer_size": 16 << 20,  # the native engine's is smaller: partition_state.WRITE_BUFFER_BYTES
                "max_write_buffer_number": 3,
                "block_cache_size": 64 << 20,
            },
            extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(window_ms)},
            help="event key -> origin of the first copy (first-copy-wins dedup state)",
        )
        aio_producer = lambda: app.producer._ensure_producer()  # noqa: E731
        self.store = TableStore(self.table)
        self.changelog = OutputBatcher(self.table.changelog_topic.get_topic_name(), aio_producer, self.store.persisted)
        self.store.changelog = self.changelog
        self.deduper = Deduper(
            self.store,
            singles_horizon_ns=int(s.config.singles_horizon_s * 1e9),
            time_range=s.time_range,
        )
        self.events_out = 0
        self.unmappable = 0
        self.started = time.monotonic()
        self.frames = 0  # raw frames processed by this worker (a bundle record carries several)
        self.first_frame: float | None = None  # monotonic time of the first and last one
        self.last_frame = time.monotonic()
        self.first_cpu = self.last_cpu = 0.0  # process CPU seconds at the first frame / last busy tick
        self._frames_at_tick = 0
        self._match_ages: deque[float] = deque(maxlen=60)  # per-second maxima: the gauge covers the last minute
        self.done: dict[TP, int] = {}  # raw partition -> next offset to process
        self.collector = DedupCollector(self.deduper.stats, self._extra, lambda: self.deduper.singles.pending)
        self.output = OutputBatcher(s.events_topic, aio_producer, after=self.changelog)  # state before events
        self.output.hook(app.producer)
        self.changelog.hook(app.producer)
        app.agent(self.raw, name="dedup", concurrency=1)(self._agent)
        app.timer(LINGER_S)(self._flush)
        app.timer(1.0)(self._tick)
        app.timer(max(0.5, s.idle_s / 2))(self._idle_check)

    def _extra(self) -> dict[str, float]:
        return {
            "mdpipe_dedup_match_age_seconds": self._last_match_age,
            "mdpipe_dedup_window_seconds": self.settings.window_s,
            "mdpipe_dedup_events_out": self.events_out,
            "mdpipe_dedup_unmappable_frames": self.unmappable,
        }

    _last_match_age = 0.0

    async def _agent(self, stream: Any) -> None:
        take = self.settings.take
        if take > 1:
            # Faust acks a taken batch only after this body ran for all of it, so the per-frame work
            # below happens before the commit exactly as in the per-event loop.
            async for events in stream.take_events(take, within=LINGER_S):
                for event in events:
                    await self._process_or_die(event.message)
        else:
            async for event in stream.events():
                await self._process_or_die(event.message)

    async def _process_or_die(self, msg: Any) -> None:
        """Faust acks a whole taken batch when its body ends, even by an exception: a frame that failed (and the
        frames after it) would then be committed unprocessed. Stop the process at once instead, uncommitted."""
        try:
            await self._process(msg)
        except Exception as exc:
            log.critical(
                "frame_processing_failed_exiting",
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                error=repr(exc),
            )
            os._exit(EXIT_OUTPUT_FAILED)

    async def _process(self, msg: Any) -> None:
        value = msg.value
        if is_bundle(value):  # the one test a plain record pays
            await self._process_bundle(msg, value)
            return
        decision = self.deduper.decide(value, Origin(msg.topic, msg.partition, msg.offset))
        self.done[msg.tp] = msg.offset + 1
        self.frames += 1
        self.last_frame = time.monotonic()
        if self.first_frame is None:
            self.first_frame, self.first_cpu = self.last_frame, time.process_time()
        if decision.verdict is not Verdict.DUPLICATE or decision.weak:  # a plain duplicate: nothing to route
            await self._route(msg, decision, msg.key)
        if self.changelog.has_full:
            await self.changelog.flush()

    async def _process_bundle(self, msg: Any, value: bytes) -> None:
        """Decide each frame of a bundle record in order, each with its own origin
        (:func:`~schemas.raw_record.frame_origin`); a bundle that does not split goes to the dead-letter topic whole."""
        try:
            frames = split_bundle(value)
        except SchemaError as exc:
            self.deduper.stats.invalid += 1
            self.done[msg.tp] = msg.offset + 1
            self._count(1)
            await self._dead_letter(msg, str(exc))  # "raw bundle: ...", as the native engine's
            return
        decide, topic, partition, offset = self.deduper.decide, msg.topic, msg.partition, msg.offset
        self._count(len(frames))
        for index, frame in enumerate(frames):
            decision = decide(frame, Origin(topic, partition, frame_origin(offset, index)))
            if decision.verdict is not Verdict.DUPLICATE or decision.weak:
                await self._route(msg, decision, None, index, frame)
        self.done[msg.tp] = offset + 1
        if self.changelog.has_full:
            await self.changelog.flush()

    def _count(self, frames: int) -> None:
        """Bookkeeping of ``frames`` frames read (the plain path does the same inline)."""
        self.frames += frames
        self.last_frame = time.monotonic()
        if self.first_frame is None:
            self.first_frame, self.first_cpu = self.last_frame, time.process_time()

    async def _route(
        self, msg: Any, decision: Decision, key: bytes | None, index: int | None = None, frame: bytes | None = None
    ) -> None:
        """Emit, dead-letter or log one decided frame of ``msg``: the record's value, or with ``index`` the frame
        ``frame`` at that index of its bundle, whose event is keyed by its own market (the bundle's key is its first
        frame's) and whose dead letter carries that frame alone."""
        if decision.emit or decision.verdict is Verdict.ALIAS:  # an alias: a lifecycle alias record (logic)
            if decision.weak:
                log_weak(decision)
            try:
                stamp_ms = int(msg.timestamp * 1000) if msg.timestamp else 0  # Faust: seconds (float)
                out = decision_bytes(decision, stamp_ms, time.time_ns())
            except Exception as exc:  # SchemaError, or a value the venue sent that cannot be represented
                self.unmappable += 1
                await self._dead_letter(msg, f"normalise: {type(exc).__name__}: {exc}", index, frame)
            else:
                if index is not None:
                    key = decision.frame.market.encode()  # type: ignore[union-attr]
                self.output.append(msg.partition, key, out)
                self.events_out += 1
                if self.output.has_full:
                    await self.output.flush()
        elif decision.verdict is Verdict.INVALID:
            await self._dead_letter(msg, decision.error, index, frame)
        elif decision.weak:
            log_weak(decision)

    async def _flush(self) -> None:
        await self.changelog.flush()
        await self.output.flush()

    async def _dead_letter(self, msg: Any, reason: str, index: int | None = None, frame: bytes | None = None) -> None:
        """Send raw record ``msg`` to the dead-letter topic, or with ``index`` only the frame ``frame`` at that index
        of its bundle (source coordinates: the record's)."""
        if index is not None:
            reason = f"{reason} (frame {index} of a bundle)"
        letter = DeadLetter(
            stage="dedup",
            reason=reason,
            payload=(msg.value if index is None else frame) or b"",
            source_topic=msg.topic,
            source_partition=msg.partition,
            source_offset=msg.offset,
            at_ns=time.time_ns(),
        )
        await self.dlq.send(key=msg.key, value=encode_dead_letter(letter))

    async def _tick(self) -> None:
        if self.frames != self._frames_at_tick:  # CPU clock read once a second: it costs a syscall
            self._frames_at_tick, self.last_cpu = self.frames, time.process_time()
        self.deduper.tick()
        self._match_ages.append(self.deduper.stats.take_interval())
        self._last_match_age = max(self._match_ages)

    def is_healthy(self) -> bool:
        """For /healthz: the Faust app has started and is neither stopping nor crashed."""
        app = self.faust
        return bool(app.started) and not app.should_stop and app.crash_reason is None

    def busy_cpu_s(self) -> float:
        """Process CPU seconds (all threads) from the first frame to the last 1-s tick that saw new frames."""
        return self.last_cpu - self.first_cpu

    def busy_s(self) -> float:
        """Seconds between the first and the last frame this worker processed."""
        return 0.0 if self.first_frame is None else self.last_frame - self.first_frame

    async def _idle_check(self) -> None:
        """With ``exit_when_idle``: stop once every assigned raw partition is drained and nothing came for a while."""
        s = self.settings
        if not s.exit_when_idle or time.monotonic() - self.last_frame < s.idle_s:
            return
        consumer = self.faust.consumer
        raw = set(s.raw_topics)
        tps = [tp for tp in consumer.assignment() if tp.topic in raw]
        if not tps:
            return
        highwaters = await consumer.highwaters(*tps)
        if any(self.done.get(tp, 0) < (hw or 0) for tp, hw in highwaters.items()):
            return
        log.info("dedup_idle_exit", partitions=len(tps), events_out=self.events_out)
        await self.faust.producer.flush()  # includes the output batches (see OutputBatcher.hook)
        os.kill(os.getpid(), signal.SIGTERM)

    def run(self, loglevel: str = "info") -> int:
        """Run the worker until SIGTERM/SIGINT (or idle, with ``exit_when_idle``); returns an exit status."""
        register(self.collector)
        worker = faust.Worker(self.faust, loglevel=loglevel, quiet=True, override_logging=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0


def build_app(settings: DedupSettings) -> DedupApp:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    return DedupApp(settings)
