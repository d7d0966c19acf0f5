"""Changelog side of the native dedup worker: create the ``<app_id>-seen-changelog`` topic and restore from it.

The changelog has the raw topics' partition count (partition *i* holds the state of raw partition *i*),
``cleanup.policy=compact,delete`` and ``retention.ms`` = the dedup window, like the Faust engine's table
changelog (same name, same key/value bytes). :class:`ChangelogRestorer` replays a partition's changelog
into the local DB from the offset the DB already covers to the high-water mark, with its own consumer
assigned to that partition (no consumer group), before the worker reads the raw partition. A restore fails
only when it makes no progress for ``stall_s``; it saves the offset it has covered every few batches, so a
restore cut short (the worker expelled, killed or restarted) resumes there instead of starting over. Its
consumer resets to the earliest offset: if retention deletes the start while it reads, it continues from the
oldest record still there (the deleted ones had expired) instead of jumping to the end.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from dedup_stream.partition_state import PartitionStates
from dedup_stream.rebalance import restore_plan
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
    """Reads changelog partitions into :class:`PartitionStates` (one consumer, re-assigned per partition)."""

    def __init__(self, client_conf: dict[str, Any], topic: str, stall_s: float = 120.0, save_every: int = 10) -> None:
        self.topic = topic
        self.stall_s = stall_s  # no record and no advance of the position for this long: the restore fails
        self.save_every = save_every  # batches between saves of the covered offset
        self.consumer = Consumer(
            {
                **client_conf,
                "group.id": f"restore-{uuid.uuid4().hex}",  # never joined nor committed: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",  # start deleted by retention: read on from the oldest left
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 16 << 20,
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,  # see mdpipe.kafka
            }
        )

    def restore(self, states: PartitionStates, partition: int) -> int:
        """Bring partition ``partition``'s local DB up to the changelog's high-water mark; returns records read."""
        tp = TopicPartition(self.topic, partition)
        low, high = self._watermarks(tp)
        plan = restore_plan(states.covered(partition), low, high)
        if plan.wipe:
            log.warning("changelog_behind_local_state_wiping", topic=self.topic, partition=partition, high=high)
            states.wipe(partition)
        if plan.empty:
            if high > 0:
                states.set_covered(partition, high - 1)
            return 0
        start = plan.start if plan.start > 0 else OFFSET_BEGINNING
        self.consumer.assign([TopicPartition(self.topic, partition, start)])
        count = 0
        position = plan.start
        deadline = time.monotonic() + self.stall_s
        batches = 0
        try:
            while position < plan.end:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"restore of {self.topic}[{partition}] made no progress for {self.stall_s}s at {position} "
                        f"of {plan.end}"
                    )
                before = position
                msgs = self.consumer.consume(10000, timeout=0.5)
                records = []
                for msg in msgs:
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    if msg.offset() < plan.end:
                        records.append((msg.key(), msg.value()))
                    position = msg.offset() + 1
                count += states.apply(partition, records)
                if not msgs:  # compaction can leave holes at the end: ask where the fetch stands
                    position = max(position, self.consumer.position([tp])[0].offset)
                if position > before:
                    deadline = time.monotonic() + self.stall_s
                    batches += 1
                    if batches % self.save_every == 0 and position < plan.end:
                        states.set_covered(partition, position - 1)  # every record below position is applied
        finally:
            self.consumer.unassign()
        states.set_covered(partition, plan.end - 1)
        log.info("changelog_restored", topic=self.topic, partition=partition, records=count, start=plan.start)
        return count

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
