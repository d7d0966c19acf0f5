"""Kafka side of the gatherer: confluent-kafka producer that never loses a frame it was handed.

``send`` is called on the hot path for every frame (key = market ticker, murmur2 partitioner, idempotent,
acks=all, compression and linger from the config). Memory is bounded by the librdkafka queue
(``queue.buffering.max.messages/kbytes``); messages never time out inside it (``message.timeout.ms=0``), so a
broker outage just fills it. When it is full, ``send`` switches to spooling: that frame and every later one go
to the on-disk :class:`~ingest.spool.Spool` (FIFO, so the topic keeps the receive order) until
:meth:`RawProducer.service` has drained the spool back into the producer. A record that fails delivery (purge
at shutdown, fatal producer error) is spooled too; a spooled segment is deleted only once all of its records
were acknowledged. Only a full spool/disk drops frames: counted in ``dropped`` and logged at error level; so does a
PERMANENT delivery error (topic deleted, record too large, not authorised), which retrying can never fix and which
would otherwise block the spool forever.

A success report is trusted only when it carries the record's offset. librdkafka also reports success for records it
merely infers were stored (an "implicit ack": the idempotent producer's request for a partition failed with a
not-stored error such as NOT_LEADER_FOR_PARTITION while its next request to that partition succeeded, so it assumes
the first was stored). A broker that holds no state yet for the producer id on that partition (a new producer, its
first write there) accepts the second request whatever its sequence, so the first request's records are then lost
although reported delivered; such reports come without an offset. A report without an offset is therefore handled
as a transient failure (counted in ``unconfirmed``): a replayed segment stays on disk and is replayed again, a frame
is spooled again (at-least-once: a copy of a record that was in fact stored is absorbed by dedup). The quiet producer
below reports failures only, so it would lose such a record without a word: live frames therefore go through the loud
producer until it has had a record stored (a report with an offset) in every partition of each of ``warm_topics``
(the gatherer's raw topic, with its partition count), after the gatherer starts and after a producer is re-created
(a new producer id); then the partitions' leaders were ready, and the quiet producer's first write to each does not
meet one that is not (``producer_warm`` is logged). The switch needs the loud producer empty at a release, as every
switch does: a backlog that outlasts the release interval keeps it loud (a report per frame) until it drains.
``warm_topics`` has no default: a producer built without the raw topic in it (``{}``) uses the quiet producer from its
first frame, which only a test or benchmark of another path may want.

Broker outages (:mod:`ingest.outage` decides when): :meth:`RawProducer.divert` sends every later frame to the spool
and moves what librdkafka still holds there too, ahead of everything spooled (:meth:`Spool.prepend`), so that
frames keep their order and a crash during the outage loses nothing; ``hold`` keeps the spool on disk until the
broker is back.

Batching: the gatherer does not hand each frame to librdkafka as it arrives. It appends ``(topic, key, value)`` to
:attr:`RawProducer.held` and calls :meth:`RawProducer.release` once the oldest held frame has waited
``gather.linger_ms`` (at the end of a socket read, or from a timer when no read comes; see :mod:`ingest.gatherer`).
A release produces every held frame in order and serves the delivery reports. So librdkafka gets the frames of one
window in one burst and sends them in one request (its own ``linger.ms`` is 1 ms, just enough to gather the burst),
instead of being woken for each partition's first message and each partition's linger timer: on this 2-core box a
thread wake-up costs tens of microseconds, several times the work of a frame. :meth:`send` releases held frames
first, so every frame reaches librdkafka in the order it was handed over, held or sent.

Bundles (``bundle_max_bytes`` > 0, ``gather.bundle_max_bytes``): a release puts the frames of each partition of a
topic whose partition count the broker reported (``known_partitions``, :meth:`RawProducer.know_partitions`) in
bundle records of up to that many bytes, key and record overhead included (:mod:`schemas.raw_record`), in their
order, keyed by their first frame's market so that the partitioner puts each on its frames' partition (the
partition of a market is computed here with Kafka's murmur2, :mod:`mdpipe.partitioner`, and remembered). A frame
larger than the limit, or alone in its partition's release, goes as a plain record. Every record costs librdkafka,
the broker and the dedup consumer a fixed amount whatever its size, so a bundle pays it once per partition and
release instead of once per frame. Everything after the release handles records as before (the spool keeps a bundle
as one record, a failed bundle is spooled whole). A bundle librdkafka refuses at ``produce()`` for its size (its
``message.max.bytes`` lowered after the bundle was spooled) is spooled again as its frames, one per record; a topic
whose ``max.message.bytes`` is below a bundle refuses it in the delivery report, a permanent error like any other
(a batch of the same frames one per record would be as large): keep it above ``gather.bundle_max_bytes``. The
counts (``sent``, ``acked``, ``spooled``, ``dropped``) are in frames (``acked`` estimated while records are in
flight: :attr:`RawProducer.acked`).

Delivery reports: a report per frame costs a Python callback and a ``Message`` object on the event-loop thread. So
live frames go to a *quiet* librdkafka producer (``delivery.report.only.error``: it reports failures only, which
reach the spool as before), and a second, *loud* one (a report per record) carries what needs reports: the spool's
replay, which settles a segment from per-record callbacks, and one release per ``LATENCY_SAMPLE_S`` whose
reports feed ``latency_samples`` (``mdpipe_gather_produce_latency_seconds``). Frames are only ever in one of the
two, so each partition keeps its order (each producer keeps it; two producers would not keep it between them): the
producer in use switches only when the other one is empty (``len()`` counts queued, in-flight and unserved
reports), at a release (to the loud one for a latency sample; back to the quiet one once the loud one is empty and
nothing is spooled) or before a spool segment is replayed (to the loud one, once the quiet one is empty). A sample
is therefore taken only when the previous release was acknowledged within the window: under a backlog latency
samples stop. ``acked`` counts the loud producer's reports plus the quiet producer's frames that left it without a
failure report (produced - failed - ``len()``; while bundling, by release: :attr:`RawProducer.acked`).
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ingest.bundling import bundle
from ingest.spool import Record, Spool
from mdpipe.kafka import TRANSIENT_PRODUCE_ERRORS, report_stored
from mdpipe.logging import get_logger, log_client_error
from schemas import SchemaError, decode_raw
from schemas.raw_record import frame_count, is_bundle, split_bundle

__all__ = ["KAFKA_LINGER_MS", "LATENCY_SAMPLE_S", "RawProducer"]

log = get_logger(__name__)

# librdkafka's own linger under the gatherer's release batching (see module docstring): enough to gather one
# release's burst into one request, no more (gather.linger_ms is the batching window).
KAFKA_LINGER_MS = 1

# One release at most this often goes through the loud producer, whose delivery reports give latency samples.
LATENCY_SAMPLE_S = 1.0
# Of a sampled release's reports, every LATENCY_SAMPLE_EVERY-th is a latency sample (every bundle's).
LATENCY_SAMPLE_EVERY = 8

# A bundle's key and librdkafka's record overhead (36 bytes measured with librdkafka 2.16), with room to spare:
# a bundle's value is bounded by gather.bundle_max_bytes less this and its key, so the record passes
# message.max.bytes whenever gather.bundle_max_bytes does.
_RECORD_OVERHEAD = 128

# Markets whose partition a producer remembers per topic while bundling (forgotten all at once past this: a
# million-market venue would otherwise keep ~100 MB of keys).
_PARTITION_CACHE = 1 << 18

# The loud producer carries what must not meet an implicit ack: a new producer id's first write to each partition
# (warm-up) and the spool's replay, which runs while leaders come back. An implicit ack needs a second request to the
# partition in flight behind the failed one; with one request in flight per connection there is none. It costs the
# loud producer's releases one round trip per partition (librdkafka sends a ProduceRequest per partition), paid by
# warm-up, replays and one latency-sample release per LATENCY_SAMPLE_S, not by the quiet producer's live frames.
_LOUD_CONF = {"max.in.flight.requests.per.connection": 1}

# Delivery errors that a later retry can fix: the shared ones (broker away, purge) and this producer's own: the purge of
# in-flight records (divert, shutdown), a fatal error (the producer is re-created), request timeouts and a partition
# without its leader or in-sync replicas (a broker restart); the spool keeps such records for the replay.
_TRANSIENT = TRANSIENT_PRODUCE_ERRORS | {KafkaError._PURGE_INFLIGHT, KafkaError._FATAL}


def _transient(err: KafkaError) -> bool:
    return err.code() in _TRANSIENT or err.retriable()


class _Draining:
    __slots__ = ("failed", "outstanding", "pos", "records", "segment")

    def __init__(self, segment: Path, records: list[Record]) -> None:
        self.segment = segment
        self.records = records
        self.pos = 0
        self.outstanding = 0
        self.failed = False


class RawProducer:
    """See module docstring. Single-threaded: call everything from the event-loop thread."""

    def __init__(
        self,
        conf: dict[str, Any],
        spool: Spool,
        *,
        warm_topics: dict[str, int],
        queue_max: int = 200_000,
        bundle_max_bytes: int = 0,
        known_partitions: dict[str, int] | None = None,
    ) -> None:
        self._conf = {
            "acks": "all",
            "message.timeout.ms": 0,
            "queue.buffering.max.messages": queue_max,
            **conf,
            "error_cb": self._on_error,
        }
        self.queue_max = int(self._conf["queue.buffering.max.messages"])  # per librdkafka producer
        self.spool = spool
        # live frames: failures reported only; spool replays and latency samples: every record reported
        self._quiet = Producer({**self._conf, "delivery.report.only.error": True, "on_delivery": self._on_failure})
        self._loud = Producer({**self._conf, **_LOUD_CONF, "on_delivery": self._on_delivery})
        # topic -> partition count: each partition must store a loud record before the quiet producer is used
        self.warm_topics = dict(warm_topics)
        self._warm = not self.warm_topics  # the quiet producer may be used (module docstring)
        self._confirmed: dict[str, set[int]] = {}  # warm topic -> partitions of a loud report with an offset
        self._p = self._quiet if self._warm else self._loud  # the one in use: the other is empty (module docstring)
        self._produce = self._p.produce
        self._next_sample = 0.0  # monotonic: the first release at or after it is sent through the loud producer
        self.held: list[tuple[str, bytes | None, bytes]] = []  # frames waiting for release() (one list for life)
        # bundles (module docstring): a release's frames of one partition of a warm topic in records of up to this
        # many bytes; 0 = one frame per record
        # a bundle never passes librdkafka's own limit on a record (message.max.bytes, which the client may set lower)
        self.bundle_max_bytes = min(bundle_max_bytes, int(self._conf.get("message.max.bytes", 1_000_000)))
        self._partitions: dict[str, int] = {}  # topic -> partition count the broker reported: bundles go only there
        self._partition_of: dict[str, dict[bytes, int]] = {}  # topic -> market -> its partition (remembered)
        # the quiet producer's (records, frames) handed over so far at the end of each release while bundling, for
        # acked (records leave it by partition, not in the order handed over: see acked)
        self._quiet_marks: deque[tuple[int, int]] = deque()
        self._quiet_frames = 0  # frames handed to the quiet producer
        self._quiet_done_frames = 0  # of them, those counted as gone (acknowledged or failed: see acked)
        self._quiet_failed_frames = 0  # frames of its failure reports (served)
        for topic, count in (known_partitions or {}).items():
            self.know_partitions(topic, count)
        self._since_poll = 0
        self._fatal = False
        self._draining: _Draining | None = None
        self._in_flight: dict[Path, _Draining] = {}  # segments handed to the producer, not yet all acknowledged
        self._last_drop_log = 0.0
        self._last_unconfirmed_log = 0.0
        self.spooling = len(spool) > 0
        self.sent = 0
        self._loud_acked = 0  # success reports of the loud producer
        self._quiet_sent = 0  # frames handed to the quiet producer
        self._quiet_failed = 0  # its failure reports (served)
        self._acked = 0  # the highest acked count computed (see acked)
        self.failed = 0
        self.spooled = 0
        self.permanent_failures = 0
        self.unconfirmed = 0  # success reports without an offset, handled as transient failures (module docstring)
        self.latency_samples: list[float] = []
        self.broker_up = True
        self.hold = False  # ingest.outage: the broker is away, so spooled records stay on disk (not replayed)
        self._generation = 0  # bumped when replays are abandoned (divert): their late callbacks release nothing
        self._collect: list[Record] | None = None  # while purging: failed frames, prepended to the spool in order

    # -- hot path ------------------------------------------------------------------------------
    def release(self) -> int:
        """Produce every held frame, in order, then serve delivery reports; returns how many were held.

        A full librdkafka queue (or a synchronous error that may pass) sends that frame and every later one to the
        spool, as :meth:`send` does."""
        held = self.held
        n = len(held)
        if not n:
            return 0
        batch = held[:]
        held.clear()
        if self._p is self._quiet:
            if not self.spooling:
                now = time.monotonic()
                if now >= self._next_sample:
                    quiet = self._quiet
                    quiet.poll(0)  # len() counts reports not yet served (successes too, served silently)
                    if not len(quiet):
                        self._next_sample = now + LATENCY_SAMPLE_S
                        self._use(self._loud)  # this release's reports are latency samples
        elif not self.spooling and self._draining is None and not self._in_flight:
            loud = self._loud
            loud.poll(0)  # len() counts reports not yet served
            if not len(loud) and (self._warm or self._quiet_warm()):
                if not self._warm:
                    self._warm = True
                    log.info("producer_warm", topics=len(self.warm_topics))
                self._use(self._quiet)
        counts = None
        if self.bundle_max_bytes:
            batch, counts = self._bundle(batch)
        produce = self._produce
        sent = frames = 0
        for i, (topic, key, value) in enumerate(batch):
            if self.spooling:
                self._spool_rest(batch, i)
                break
            try:
                produce(topic, value, key)
            except BufferError:
                self.spooling = True
                self._spool_rest(batch, i)
                break
            except KafkaException as exc:
                self._produce_failed(exc, topic, key, value)
                continue
            sent += 1
            frames += counts[i] if counts is not None else 1
        self.sent += frames
        if self._p is self._quiet and sent:
            self._quiet_count(sent, frames)
        self._since_poll = 0
        self._p.poll(0)
        return n

    def _bundle(
        self, batch: list[tuple[str, bytes | None, bytes]]
    ) -> tuple[list[tuple[str, bytes | None, bytes]], list[int]]:
        """``batch`` as the records to produce and the frames each carries (:func:`ingest.bundling.bundle`)."""
        return bundle(
            batch, self._partition_of, self._partitions, self.bundle_max_bytes, _RECORD_OVERHEAD, _PARTITION_CACHE
        )

    def _quiet_count(self, records: int, frames: int) -> None:
        """Count records and frames handed to the quiet producer (see :attr:`acked`)."""
        self._quiet_sent += records
        if self.bundle_max_bytes:
            self._quiet_frames += frames
            self._quiet_marks.append((self._quiet_sent, self._quiet_frames))

    def know_partitions(self, topic: str, count: int) -> None:
        """Bundle ``topic``'s frames from now on, with ``count`` partitions: the count the broker reported (at start,
        or when a deferred partition check passed). A bundle goes to the partition of its first frame's market, so
        every frame in it lands on its own partition only with the topic's real count; a topic whose count is not
        known gets plain records (the partitioner places each). Raw topics do not change their count while a
        gatherer runs (README, "Operating notes": adding partitions remaps markets)."""
        if count <= 0 or not self.bundle_max_bytes:
            return
        if self._partitions.get(topic) != count:
            self._partitions[topic] = count
            self._partition_of[topic] = {}

    def _quiet_warm(self) -> bool:
        """May frames go to the quiet producer? Only once the loud one has had a record stored (a report with an
        offset) in every partition of every warm topic: then the partitions' leaders were ready for this producer
        generation, and the quiet producer's first write to each (the write an implicit ack can lose without a
        report, module docstring) does not meet a leader that is not. Latched by the caller's switch."""
        confirmed = self._confirmed
        return all(len(confirmed.get(topic, ())) >= count for topic, count in self.warm_topics.items())

    def _confirm(self, msg: Any) -> None:
        """A loud report with an offset: its partition's leader stored a record of this producer generation."""
        parts = self._confirmed.get(msg.topic())
        if parts is not None:
            parts.add(msg.partition())
        elif msg.topic() in self.warm_topics:
            self._confirmed[msg.topic()] = {msg.partition()}

    def _use(self, producer: Producer) -> None:
        """Switch the producer frames go to (the caller made sure the other one is empty)."""
        self._p = producer
        self._produce = producer.produce

    @property
    def acked(self) -> int:
        """Frames the broker acknowledged: the loud producer's reports (a bundle's report counts its frames), plus
        the quiet producer's frames that left it without a failure report. Never goes down (a failure report
        waiting to be served may count twice in ``len()`` for a moment).

        While bundling, the quiet producer says how many records are still in it (``len()``), not which, and records
        of different partitions leave it in any order: its frames count by release, a release's once as many
        records as were handed over up to its end have left, and all of them whenever it is empty (exact then).
        With records in flight the count is an estimate that can run ahead of the truth by the frames of the records
        still in flight (an older release's record outlasting a newer one's), and trail it by a release's."""
        quiet = self._quiet
        in_flight = len(quiet)
        done = self._quiet_sent - in_flight  # records that left the quiet producer, acknowledged or failed
        if self.bundle_max_bytes:
            marks = self._quiet_marks
            if not in_flight:
                marks.clear()
                self._quiet_done_frames = self._quiet_frames
            while marks and marks[0][0] <= done:
                self._quiet_done_frames = marks.popleft()[1]
            acked = self._loud_acked + self._quiet_done_frames - self._quiet_failed_frames
        else:
            acked = self._loud_acked + done - self._quiet_failed
        if acked > self._acked:
            self._acked = acked
        return self._acked

    def _spool_rest(self, batch: list[tuple[str, bytes | None, bytes]], start: int) -> None:
        for topic, key, value in batch[start:]:
            self._to_spool(topic, key, value)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Hand one frame to librdkafka now (after any held frames)."""
        if self.held:
            self.release()
        if self.spooling:
            self._to_spool(topic, key, value)
            return
        try:
            self._produce(topic, value, key)
        except BufferError:
            self.spooling = True
            self._to_spool(topic, key, value)
            return
        except KafkaException as exc:
            self._produce_failed(exc, topic, key, value)
            return
        self.sent += 1
        if self._p is self._quiet:
            self._quiet_count(1, 1)
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            self._p.poll(0)

    def _on_failure(self, err: KafkaError | None, msg: Any) -> None:
        """The quiet producer's reports: failures only (``delivery.report.only.error``)."""
        if err is None:  # not sent by librdkafka with that setting; counted by acked from len() if it were
            return
        self._quiet_failed += 1
        if self.bundle_max_bytes:
            self._quiet_failed_frames += frame_count(msg.value())
        self._on_delivery(err, msg)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            if report_stored(msg):
                frames = frame_count(msg.value()) if self.bundle_max_bytes else 1
                self._loud_acked += frames
                if not self._warm:
                    self._confirm(msg)
                if frames > 1 or not self._loud_acked % LATENCY_SAMPLE_EVERY:  # a bundle: a sample of its own
                    self.latency_samples.append(msg.latency() or 0.0)
                return
            self._note_unconfirmed(msg)  # and spooled again, as a transient failure is
        else:
            self.failed += 1
            if not _transient(err):
                self._permanent(err, msg.topic(), msg.value())
                return
        if self._collect is not None:  # purged: older than anything spooled, prepended once the purge is served
            self._collect.append((msg.topic(), msg.key() or b"", msg.value()))
            return
        self.spooling = True
        self._to_spool(msg.topic(), msg.key(), msg.value())

    def _produce_failed(self, exc: KafkaException, topic: str, key: bytes | None, value: bytes) -> None:
        """A synchronous produce error other than a full queue: spool what may succeed later, drop the rest loudly."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or err.fatal() or err.retriable() or _transient(err):
            if err is not None and err.fatal():
                self._fatal = True
            self.spooling = True
            self._to_spool(topic, key, value)
            return
        self.failed += 1
        if _too_large(err, value):
            self.spooling = True
            self._unbundle(topic, key, value)
            return
        self._permanent(err, topic, value)

    def _unbundle(self, topic: str, key: bytes | None, value: bytes) -> None:
        """A bundle librdkafka refused at ``produce()`` for its size: its frames go to the spool as plain records,
        each keyed by its own market, in their order (or with the frames a purge is collecting). In a release they
        keep their place in the partition (everything after them is spooled too); refused in a spool replay (the
        client's limit lowered since the bundle was spooled) they go behind what the spool holds."""
        for frame in split_bundle(value):
            try:
                market = decode_raw(frame).market.encode()
            except SchemaError:
                market = key or b""
            if self._collect is not None:
                self._collect.append((topic, market, frame))
            else:
                self._to_spool(topic, market, frame)

    def _note_unconfirmed(self, msg: Any) -> None:
        """A success report without an offset: counted and logged (rate-limited); the caller keeps the record."""
        self.unconfirmed += 1
        now = time.monotonic()
        if now - self._last_unconfirmed_log > 5:
            self._last_unconfirmed_log = now
            log.warning(
                "delivery_unconfirmed_kept", topic=msg.topic(), partition=msg.partition(), unconfirmed=self.unconfirmed
            )

    def _permanent(self, err: KafkaError, topic: str | None, value: bytes | None) -> None:
        self.spool.dropped += frame_count(value)
        self.permanent_failures += 1
        now = time.monotonic()
        if now - self._last_drop_log > 5:
            self._last_drop_log = now
            log.error(
                "frame_dropped_permanent_kafka_error",
                topic=topic,
                code=err.name(),
                reason=err.str(),
                dropped=self.spool.dropped,
            )

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.broker_up = False
        if err.fatal():
            self._fatal = True
        # rate-limited per kind: during an outage librdkafka repeats the same error every few hundred ms
        log_client_error(log, "kafka_error", err, code=err.name(), fatal=err.fatal())

    def _to_spool(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.spool.append(topic, key, value):
            self.spooled += frame_count(value) if self.bundle_max_bytes else 1
            return
        now = time.monotonic()
        if now - self._last_drop_log > 5:
            self._last_drop_log = now
            log.error(
                "spool_full_frames_dropped",
                dropped=self.spool.dropped,
                spool_bytes=self.spool.bytes,
                max_bytes=self.spool.max_bytes,
            )

    # -- background ----------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Messages inside the producers not yet acknowledged."""
        return len(self._quiet) + len(self._loud)

    def service(self, budget: int = 50_000) -> None:
        """Release held frames, serve delivery reports; move spooled records back into the producer when it has
        room."""
        if self.held:
            self.release()
        self._since_poll = 0
        self._quiet.poll(0)  # the one not in use is empty: this serves its error callbacks
        self._loud.poll(0)
        if self.acked and len(self._p) < self.queue_max:
            self.broker_up = True
        if self._fatal:
            self._recreate()
        if not self.spooling:
            return
        self.spool.flush()
        if self.hold:
            return
        while budget > 0:
            d = self._draining
            if d is None:
                if self._p is self._quiet:
                    quiet = self._quiet
                    quiet.poll(0)  # len() also counts events not yet served (errors, reports)
                    if len(quiet):
                        return  # its frames are older than the spool's: replayed once they are acknowledged
                    self._use(self._loud)  # replays need a report per record
                if len(self._p) > self.queue_max // 2:
                    return
                taken = self.spool.take_oldest(self._in_flight)
                if taken is None:
                    if not self._in_flight:
                        self.spooling = False
                        log.info("spool_drained")
                    return
                d = self._draining = _Draining(*taken)
                self._in_flight[d.segment] = d
                log.info("spool_replay", segment=d.segment.name, records=len(d.records), left=len(self.spool))
            while d.pos < len(d.records) and budget > 0:
                topic, key, value = d.records[d.pos]
                try:
                    self._produce(topic, value, key or None, on_delivery=self._spool_cb(d))
                except BufferError:
                    self._p.poll(0)
                    return
                except KafkaException as exc:
                    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                    if err is None or err.fatal() or err.retriable() or _transient(err):
                        if err is not None and err.fatal():
                            self._fatal = True
                        return  # the record stays in the segment; retried on the next service()
                    self.failed += 1
                    if _too_large(err, value):  # its frames go to the spool again, one per record
                        self._unbundle(topic, key or None, value)
                    else:
                        self._permanent(err, topic, value)  # this record can never be delivered: counted, skipped
                    d.pos += 1
                    continue
                d.pos += 1
                d.outstanding += 1
                budget -= 1
            if d.pos < len(d.records):
                return
            self._draining = None  # fully handed over; the callbacks release it
            if d.outstanding == 0:
                self._settle(d)
            if not any(s not in self._in_flight for s in self.spool.segments()):
                # the newest segment is in the producer's queues: later frames can follow it there directly (same
                # order per partition), or a venue that never pauses would keep the gatherer spooling for ever
                self.spooling = False
                log.info("spool_drained", in_flight_segments=len(self._in_flight))
                return

    def _spool_cb(self, d: _Draining) -> Any:
        generation = self._generation

        def done(err: KafkaError | None, msg: Any) -> None:
            if err is None and report_stored(msg):
                self._loud_acked += frame_count(msg.value())
                if not self._warm:
                    self._confirm(msg)
            elif err is None or _transient(err):
                if err is None:
                    self._note_unconfirmed(msg)
                if self._collect is not None:  # purged: re-spooled in queue order
                    self._collect.append((msg.topic(), msg.key() or b"", msg.value()))
                else:
                    d.failed = True  # the segment stays on disk: replayed whole again (at-least-once)
            else:
                self._permanent(err, msg.topic(), msg.value())
            d.outstanding -= 1
            if generation != self._generation:
                return  # abandoned by divert(): the segment stays on disk and is replayed whole later
            if d.outstanding == 0 and d.pos >= len(d.records) and self._draining is not d:
                self._settle(d)

        return done

    def _settle(self, d: _Draining) -> None:
        self._in_flight.pop(d.segment, None)
        if d.failed:
            log.warning("spool_segment_retry", segment=d.segment.name)
            # left on disk: replayed whole on the next pass (at-least-once), which service() runs only while spooling
            # (the spool may have been declared drained when this segment was handed over); new frames queue behind it
            self.spooling = True
            return
        self.spool.release(d.segment, len(d.records))

    # -- broker outages (ingest.outage) ---------------------------------------------------------
    def divert(self) -> int:
        """The broker is away: from now on every frame goes to the spool, and the frames librdkafka still holds
        (queued or in flight) are moved there too, ahead of everything spooled, so that a crash during the outage
        loses none of them. Spooled records being replayed are abandoned (their segments stay on disk and are
        replayed whole later). Returns how many frames were moved. Call from the event-loop thread."""
        self.spooling = True
        return self._purge_to_spool()

    def _purge_to_spool(self) -> int:
        """Empty librdkafka into the spool, keeping the order: what it held (frames produced directly and replayed
        spool records alike, in its queue order: per partition, the order they were produced) is older than every
        spool record it was not handed yet, so it becomes a segment read before those (:meth:`Spool.prepend`),
        followed by the part of a segment whose replay was cut short; the segments it had been handed are deleted
        once that segment is on disk (a crash in between replays their records twice: exact copies, see
        :mod:`ingest.outage`)."""
        self._generation += 1
        draining, self._draining = self._draining, None
        handed, self._in_flight = self._in_flight, {}
        self._collect = []
        try:
            # the one not in use is empty (see module docstring): purged first all the same, in case
            for producer in (self._loud, self._quiet) if self._p is self._quiet else (self._quiet, self._loud):
                producer.purge(in_queue=True, in_flight=True)
                while producer.poll(0):  # serve every purge report now: no newer frame may reach the spool first
                    pass
        finally:
            collected, self._collect = self._collect, None
        self._use(self._quiet if self._warm else self._loud)  # both are empty
        if draining is not None:
            handed[draining.segment] = draining
            collected += draining.records[draining.pos :]
        if not collected and not handed:
            return 0
        self.spooling = True  # new frames queue behind them
        kept = self.spool.prepend(collected)
        self.spooled += sum(frame_count(value) for _, _, value in collected[:kept])
        if kept == len(collected):
            for segment, d in handed.items():
                if not d.failed:  # a failed one (fatal error before the purge) is replayed whole, later
                    self.spool.release(segment, len(d.records))
        return kept

    def probe(self, topic: str, timeout: float) -> bool:
        """Does a broker answer a metadata request (for ``topic``) within ``timeout``? Blocks; any thread."""
        try:
            return bool(self._quiet.list_topics(topic, timeout=timeout).brokers)
        except KafkaException:
            return False

    def _recreate(self) -> None:
        log.error("kafka_producer_fatal_recreating", queued=self.queued)
        self._fatal = False
        self._purge_to_spool()  # the purged frames go to the spool ahead of everything spooled
        self._quiet = Producer({**self._conf, "delivery.report.only.error": True, "on_delivery": self._on_failure})
        self._loud = Producer({**self._conf, **_LOUD_CONF, "on_delivery": self._on_delivery})
        self._warm = not self.warm_topics  # a new producer id: loud again until every partition took its record
        self._confirmed.clear()
        self._use(self._quiet if self._warm else self._loud)

    def flush(self, timeout: float) -> int:
        """Deliver what is queued (and spooled) within ``timeout``; returns messages still not acknowledged."""
        deadline = time.monotonic() + timeout
        self.release()
        while time.monotonic() < deadline:
            self.service()
            if not self.spooling and self.queued == 0:
                return 0
            if self.hold and self.spooling:
                break  # the broker is away (ingest.outage): the spool stays on disk for the next run
            self._p.flush(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.queued + len(self.spool)

    def close(self, timeout: float = 10.0) -> None:
        """Flush; whatever is still not acknowledged goes to the spool (replayed by the next run).

        A flush that fails (e.g. an unreadable spool segment) still purges the producer into the spool and closes
        the spool, then raises."""
        error: Exception | None = None
        try:
            left = self.flush(timeout)  # releases held frames first
        except Exception as exc:
            error = exc
            left = self.queued + len(self.spool)
            log.error("producer_flush_failed", error_type=type(exc).__name__, error=str(exc)[:300])
        if self.queued:
            self._purge_to_spool()  # ahead of everything spooled: the next run replays them first
        self.spool.close()
        log.info(
            "producer_closed",
            unacknowledged=left,
            spooled_records=len(self.spool),
            acked=self.acked,
            unconfirmed=self.unconfirmed,
        )
        if error is not None:
            raise error


def _too_large(err: KafkaError, value: bytes | None) -> bool:
    """A bundle refused for its size at ``produce()`` (split and spooled again frame by frame)."""
    return err.code() == KafkaError.MSG_SIZE_TOO_LARGE and is_bundle(value)
