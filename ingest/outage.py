"""Broker outages in the gatherer: notice them, keep every frame on disk while they last, resume in order after.

Role in the pipeline: the gatherer must go on recording the venue whether or not Kafka answers. Without this module
its frames would sit in librdkafka's memory (up to ``gather.queue_max_kbytes``) for as long as the broker is away,
and a crash, an OOM kill or a power cut in that window would lose them all.

:class:`BrokerState` is the pure decision: from evidence "the broker answered" / "it did not" at given times it says
whether the broker is reachable and whether an outage has begun (unreachable for ``gather.spool_after_s``, counted
from the last moment it was reachable, or from the start when it never was). :class:`BrokerWatch` is the I/O around
it, one gatherer task:

* evidence: new delivery acknowledgements (free, while frames flow), else a metadata request on the producer's own
  client every ``probe_interval_s`` (in a worker thread: it blocks up to ``probe_timeout_s``); a probe that fails
  while acknowledgements arrive counts as an answer (the broker is slow, not away);
* when an outage begins: :meth:`ingest.producer.RawProducer.divert` (every later frame goes to the spool; what
  librdkafka still holds is moved to the spool ahead of it) and ``hold`` (spooled records stay on disk);
* when the broker answers again (and the start-up partition check, if it was deferred, has passed): ``hold`` is
  lifted and the producer replays the spool oldest segment first, new frames queueing behind it on disk, so each
  partition receives its frames in the order the gatherer recorded them;
* every ``gather.spool_fsync_s``: fsync of what was appended to the spool (in a worker thread);
* one log line per change (``broker_unreachable``, ``broker_outage_spooling``, ``broker_reachable``), metrics
  ``mdpipe_gather_broker_reachable``, ``mdpipe_gather_broker_unreachable_seconds``, ``mdpipe_gather_spooling`` and
  ``mdpipe_gather_spool_fsync_seconds``.

Partitioning: spooled records carry their topic and key (the market), never a partition. librdkafka's murmur2
partitioner chooses the partition when the record is finally produced, from the partition count the broker reports
then, exactly as for a frame produced directly; so the gatherer needs no partition count to spool. Bundles
(several frames in one record, keyed by the first one's market) need the count to group frames by partition: the
producer bundles only once the broker has reported it (at start, or when the deferred check below passes), and
sends one frame per record until then. What it must not
do is write into topics whose layout is wrong (raw and ``events`` partitioned alike: dedup relies on it): when the
broker did not answer at start-up, the partition check runs here once it does, and until it passes nothing spooled is
replayed; a failing check fails the gatherer (exit 3) with the spool kept on disk.

Duplicates: moving frames that were in flight when the broker went away may store a frame twice (the broker may
have written it before the connection died). The copies are byte-identical frames of the same gatherer, so they have
the same event key: dedup keeps the first and counts the other as a duplicate (within ``dedup.window_s``; past it
the sink's unique (market, ts, event_key, venue) absorbs it). Replaying a segment whose replay an outage interrupted
repeats its acknowledged records the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from ingest import metrics as m
from ingest.producer import RawProducer
from mdpipe.logging import KvLogger, get_logger

__all__ = ["BrokerState", "BrokerWatch"]

REACHABLE = "reachable"
UNREACHABLE = "unreachable"
OUTAGE = "outage"


class BrokerState:
    """Is the broker reachable, has an outage begun (pure: times are given, nothing is read)."""

    def __init__(self, spool_after_s: float, now: float) -> None:
        self.spool_after_s = spool_after_s
        self.started = now
        self.last_ok: float | None = None  # when the broker last answered
        self.reachable: bool | None = None  # None: no evidence yet
        self.outage = False

    def observe(self, ok: bool, now: float) -> list[str]:
        """Evidence at ``now``; returns the changes it makes (REACHABLE, UNREACHABLE, OUTAGE), usually none."""
        if ok:
            self.last_ok = now
            if self.reachable is True:
                return []
            self.reachable = True
            self.outage = False
            return [REACHABLE]
        changes = []
        if self.reachable is not False:
            self.reachable = False
            changes.append(UNREACHABLE)
        return changes + self.tick(now)

    def tick(self, now: float) -> list[str]:
        """The passing of time: an unreachable broker turns into an outage after ``spool_after_s``."""
        if self.reachable is False and not self.outage and self.unreachable_s(now) >= self.spool_after_s:
            self.outage = True
            return [OUTAGE]
        return []

    def unreachable_s(self, now: float) -> float:
        """Seconds since the broker was last reachable (since the start when it never was); 0 while reachable."""
        if self.reachable is True:
            return 0.0
        return max(0.0, now - (self.last_ok if self.last_ok is not None else self.started))


class BrokerWatch:
    """The gatherer task around :class:`BrokerState` (see module docstring); :meth:`step` runs every ~0.1 s."""

    def __init__(
        self,
        producer: RawProducer,
        gatherer_id: str,
        *,
        probe_topic: str,
        spool_after_s: float = 5.0,
        fsync_s: float = 1.0,
        partition_check: Callable[[], Any] | None = None,
        on_fatal: Callable[[str], None] = lambda reason: None,
        log: KvLogger | None = None,
        probe_interval_s: float = 1.0,
        probe_timeout_s: float = 1.0,
        check_retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.producer = producer
        self.gid = gatherer_id
        self.probe_topic = probe_topic
        self.fsync_s = fsync_s
        self.partition_check = partition_check
        self.on_fatal = on_fatal
        self.log = log or get_logger(__name__, gatherer=gatherer_id)
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.check_retry_s = check_retry_s
        self.clock = clock
        now = clock()
        self.state = BrokerState(spool_after_s, now)
        self.checked = partition_check is None
        self.failed = False
        self.outages = 0
        self._acked = getattr(producer, "acked", 0)  # (tests give the gatherer stand-in producers)
        self._last_probe = -math.inf
        self._next_check = now
        self._last_sync = now
        self._spooled_at_outage = 0
        self._in_outage = False
        producer.hold = True  # nothing spooled goes back into memory before the broker has answered once

    async def step(self) -> float:
        p = self.producer
        now = self.clock()
        if p.acked != self._acked:
            self._acked = p.acked
            self._observe(True, now)
        elif now - self._last_probe >= self.probe_interval_s:
            self._last_probe = now
            ok = await asyncio.to_thread(p.probe, self.probe_topic, self.probe_timeout_s)
            if not ok and p.acked != self._acked:
                # acknowledgements arrived while the probe waited: the broker answered, only slowly (a loaded
                # machine, a broker just restarted); one slow metadata reply is not the broker going away
                self._acked = p.acked
                ok = True
            self._observe(ok, self.clock())
        self._apply(self.state.tick(now), now)
        if not self.checked and not self.failed and self.state.reachable and now >= self._next_check:
            await self._check(now)
        p.hold = not (self.state.reachable and self.checked)
        if now - self._last_sync >= self.fsync_s:
            self._last_sync = now
            job = p.spool.sync_job()
            if job is not None:
                m.SPOOL_FSYNC.labels(self.gid).observe(await asyncio.to_thread(job))
        self._export(self.clock())
        return 0.1

    def _observe(self, ok: bool, now: float) -> None:
        down_s = self.state.unreachable_s(now)
        self._apply(self.state.observe(ok, now), now, down_s)

    def _apply(self, changes: list[str], now: float, down_s: float = 0.0) -> None:
        p = self.producer
        for change in changes:
            if change == UNREACHABLE:
                self.log.warning(
                    "broker_unreachable",
                    last_reachable_s=round(self.state.unreachable_s(now), 1),
                    spool_after_s=self.state.spool_after_s,
                    never_reached=self.state.last_ok is None,
                )
            elif change == OUTAGE:
                self.outages += 1
                self._in_outage = True
                moved = p.divert()
                # emptying librdkafka makes the acknowledged count exact: what it catches up with (a release's frames
                # acknowledged before the outage, see RawProducer.acked) is not the broker answering now
                self._acked = p.acked
                self._spooled_at_outage = p.spooled - moved
                self.log.warning(
                    "broker_outage_spooling",
                    unreachable_s=round(self.state.unreachable_s(now), 1),
                    moved_from_memory=moved,
                    spool_records=len(p.spool),
                    spool_bytes=p.spool.bytes,
                )
            elif change == REACHABLE:
                self.log.info(
                    "broker_reachable",
                    unreachable_s=round(down_s, 1),
                    after_outage=self._in_outage,
                    spooled_in_outage=p.spooled - self._spooled_at_outage if self._in_outage else 0,
                    spool_records=len(p.spool),
                )
                self._in_outage = False

    async def _check(self, now: float) -> None:
        from confluent_kafka import KafkaException

        from mdpipe.config import ConfigError

        check = self.partition_check
        assert check is not None
        try:
            count = await asyncio.to_thread(check)
        except ConfigError as exc:  # topics missing or partitioned unlike events: never write into them
            self.failed = True
            self.log.error("partition_check_failed", reason=str(exc)[:300], spool_records=len(self.producer.spool))
            self.on_fatal(str(exc))
            return
        except (KafkaException, OSError) as exc:  # the broker went away again: try later
            self._next_check = now + self.check_retry_s
            self.log.warning("partition_check_retry", error=str(exc)[:200], retry_s=self.check_retry_s)
            return
        self.checked = True
        if isinstance(count, int):  # the raw topic's partition count: bundles from now on (ingest.producer)
            self.producer.know_partitions(self.probe_topic, count)
        self.log.info("partition_check_passed", deferred=True, partitions=count if isinstance(count, int) else None)

    def _export(self, now: float) -> None:
        gid = self.gid
        m.BROKER_REACHABLE.labels(gid).set(1 if self.state.reachable else 0)
        m.BROKER_UNREACHABLE_SECONDS.labels(gid).set(round(self.state.unreachable_s(now), 3))
        m.SPOOLING.labels(gid).set(1 if self.producer.spooling else 0)
