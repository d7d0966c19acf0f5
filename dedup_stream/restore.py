"""Changelog side of the native dedup worker: create the ``<app_id>-seen-changelog`` topic and restore from it.

The changelog has the raw topics' partition count (partition *i* holds the state of raw partition *i*),
``cleanup.policy=compact,delete`` and ``retention.ms`` = the dedup window, like the Faust engine's table changelog (same
name). Its records are batch records (many state writes each) or, written by older workers, single ones
(:mod:`dedup_stream.changelog_format`); a restore applies both, in offset order. :class:`ChangelogRestorer` replays a
partition's changelog into the local DB from the offset the DB already covers to the high-water mark, with its own
consumer assigned to those partitions (no consumer group), before the worker reads the raw partitions: every partition
assigned at once is fetched together, each stops at the high-water mark read before it started, and the loop wakes at
the first record that arrives and never waits for a fuller batch (a restore of a few hundred records takes a round trip,
not a consume timeout per partition). A restore fails only when it makes no progress for ``stall_s``; it saves the
offset it has covered every few batches, so a restore cut short (the worker expelled, killed or restarted) resumes there
instead of starting over. Its consumer resets to the earliest offset: if retention deletes the start while it reads, it
continues from the oldest record still there (the deleted ones had expired) instead of jumping to the end.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dedup_stream.changelog_format import expand
from dedup_stream.partition_state import PartitionStates
from dedup_stream.rebalance import RestorePlan, restore_plan
from mdpipe.kafka import FETCH_QUEUE_BACKOFF_MS
from mdpipe.logging import get_logger

__all__ = ["ChangelogRestorer", "ensure_changelog"]

log = get_logger(__name__)

# what a partition of a topic created a moment ago can answer until the metadata has spread
# errors of a topic created a moment ago, while its partition leaders are still being elected and announced
_NEW_TOPIC = (
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
)
_IDLE_POLL_S = 0.2  # poll() returns at the first record: this only bounds a wait with nothing arriving
_MAX_BATCH = 10_000  # records taken per wake-up (already fetched; never waited for)
# how long the broker may hold a fetch with nothing new: only met at a partition's end when compaction removed its
# last records (the end is then learnt from an empty fetch), so short
_FETCH_WAIT_MS = 10


def ensure_changelog(
    client_conf: dict[str, Any], topic: str, partitions: int, replication: int, window_s: float
) -> None:
    """Create the changelog topic if missing; raise RuntimeError if it exists with another partition count."""
    admin = AdminClient(client_conf)
    meta = admin.list_topics(timeout=15)
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        config = {"cleanup.policy": "compact,delete", "retention.ms": str(int(window_s * 1000))}
        future = admin.create_topics([NewTopic(topic, partitions, replication, config=config)])[topic]
        try:
            future.result()
            log.info("changelog_created", topic=topic, partitions=partitions, retention_s=window_s)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another worker created it first
                raise
        return
    if len(info.partitions) != partitions:
        raise RuntimeError(
            f"dedup: changelog {topic} has {len(info.partitions)} partitions, the raw topics {partitions}: "
            "delete it (its state follows the raw partitions) or use another app id"
        )


class ChangelogRestorer:
    """Reads changelog partitions into :class:`PartitionStates` (one consumer, assigned the partitions to restore)."""

    def __init__(self, client_conf: dict[str, Any], topic: str, stall_s: float = 120.0, save_every: int = 10) -> None:
        self.topic = topic
        self.stall_s = stall_s  # no record and no advance of the position for this long: the restore fails
        self.save_every = save_every  # batches of a partition between saves of its covered offset
        self.consumer = Consumer(
            {
                **client_conf,
                "group.id": f"restore-{uuid.uuid4().hex}",  # never joined nor committed: assign() only
                "enable.auto.commit": False,
                # the end of a partition whose last records compaction removed is only known from the broker
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",  # start deleted by retention: read on from the oldest left
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 16 << 20,
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,  # see mdpipe.kafka
            }
        )

    def restore(self, states: PartitionStates, partition: int) -> int:
        """Bring partition ``partition``'s local DB up to the changelog's high-water mark; returns records read."""
        return self.restore_all(states, [partition])

    def restore_all(self, states: PartitionStates, partitions: list[int]) -> int:
        """Bring every partition's local DB (open) up to the changelog's high-water mark, read up-front per
        partition, all partitions fetched together; returns the records read.

        A partition is done as soon as a record at or past its mark arrived (or the broker says its end is there:
        compaction can remove the last records); the loop never waits for a batch to fill or a timeout to pass
        while records are coming."""
        plans: dict[int, RestorePlan] = {}
        for p in partitions:
            low, high = self._watermarks(TopicPartition(self.topic, p))
            plan = restore_plan(states.covered(p), low, high)
            if plan.wipe:
                log.warning("changelog_behind_local_state_wiping", topic=self.topic, partition=p, high=high)
                states.wipe(p)
            if plan.empty:
                if high > 0:
                    states.set_covered(p, high - 1)
            else:
                plans[p] = plan
        if not plans:
            return 0
        position = {p: plan.start for p, plan in plans.items()}
        counts = dict.fromkeys(plans, 0)
        batches = dict.fromkeys(plans, 0)
        consumer = self.consumer
        assigned = [TopicPartition(self.topic, p) for p in plans]
        consumer.assign(
            [
                TopicPartition(self.topic, p, plan.start if plan.start > 0 else OFFSET_BEGINNING)
                for p, plan in plans.items()
            ]
        )
        deadline = time.monotonic() + self.stall_s
        try:
            while plans:
                if time.monotonic() > deadline:
                    left = {p: f"{position[p]}/{plan.end}" for p, plan in plans.items()}
                    raise RuntimeError(f"restore of {self.topic} made no progress for {self.stall_s}s: {left}")
                first = consumer.poll(_IDLE_POLL_S)
                if first is None:
                    continue
                msgs = [first, *consumer.consume(_MAX_BATCH, 0)]
                records: dict[int, list[tuple[bytes, bytes]]] = {}
                for msg in msgs:
                    p = msg.partition()
                    plan = plans.get(p)
                    if plan is None:  # done already (a fetch in flight when it was paused)
                        continue
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(error)
                        position[p] = max(position[p], msg.offset())  # the broker's end: nothing more to read
                        continue
                    offset = msg.offset()
                    if offset < plan.end:  # a batch record stands for many writes, an older single one for one
                        records.setdefault(p, []).extend(expand(msg.key(), msg.value()))
                    position[p] = offset + 1
                for p, recs in records.items():
                    counts[p] += states.apply(p, recs)
                    batches[p] += 1
                    if batches[p] % self.save_every == 0 and position[p] < plans[p].end:
                        states.set_covered(p, position[p] - 1)  # every record below position is applied
                deadline = time.monotonic() + self.stall_s
                done = [p for p, plan in plans.items() if position[p] >= plan.end]
                if done:
                    consumer.pause([TopicPartition(self.topic, p) for p in done])
                for p in done:
                    states.set_covered(p, plans.pop(p).end - 1)
                    log.info("changelog_restored", topic=self.topic, partition=p, records=counts[p])
        finally:
            # librdkafka keeps a partition's pause across unassign/assign: a later restore would never fetch it
            consumer.resume(assigned)
            consumer.unassign()
        return sum(counts.values())

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        """(low, high) of a changelog partition, retried while a just-created topic is not known everywhere yet."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=15, cached=False)
                return int(low), int(high)
            except KafkaException as exc:
                error = exc.args[0]
                if time.monotonic() > deadline or not (error.retriable() or error.code() in _NEW_TOPIC):
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.consumer.close()
