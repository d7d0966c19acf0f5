"""Read-only probes of a running pipeline: topic end offsets, consumer-group positions, scraped stage metrics.

Used by `mdpipe status`, `make demo` (progress and drain detection) and the end-to-end tests. Nothing
here depends on a stage's internals: progress is measured where the data is (Kafka offsets, the sink's
committed offsets, each stage's Prometheus endpoint).
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ops.group_lag import GroupLag, lag_records, next_record_offset, summarise

__all__ = ["KafkaProbe", "Sample", "scrape"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, timeout: float = 2.0) -> list[Sample]:
    """All samples of one Prometheus endpoint (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return []
    return [
        Sample(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(text) for s in fam.samples
    ]


class KafkaProbe:
    """End offsets of topics and committed offsets of consumer groups, summed per topic."""

    def __init__(self, client_config: dict[str, Any]) -> None:
        from confluent_kafka.admin import AdminClient

        self._config = client_config
        self._admin = AdminClient(client_config)
        self._partitions: dict[str, int] = {}
        self._group_consumers: dict[str, Any] = {}
        self._reader: Any = None  # reads single records for their timestamps (group_lag)

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            meta = self._admin.list_topics(topic=topic, timeout=5)
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                return 0
            self._partitions[topic] = len(info.partitions)
        return self._partitions[topic]

    def topic_names(self) -> list[str]:
        return sorted(self._admin.list_topics(timeout=5).topics)

    def end_offsets(self, topics: list[str]) -> dict[str, int]:
        """Sum over partitions of the end offset a read_committed consumer sees (the last stable offset: the high
        watermark unless a transaction is open; records ever written, for non-compacted topics). One ListOffsets
        request per broker for every partition of ``topics`` (the admin client's batch), not one round trip per
        partition: `make demo` and bench-e2e ask every second, and each request costs the broker they measure."""
        from confluent_kafka import IsolationLevel, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        latest = OffsetSpec.latest()
        spec = {TopicPartition(t, p): latest for t in topics for p in range(self.partitions(t))}
        out = dict.fromkeys(topics, 0)
        if spec:
            found = self._admin.list_offsets(spec, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=5)
            for tp, future in found.items():
                out[tp.topic] += max(future.result().offset, 0)
        return out

    def committed(self, group: str, topics: list[str]) -> dict[str, int]:
        """Sum over partitions of a group's committed offsets (0 where nothing is committed)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = self._group_consumers.get(group)
        if consumer is None:  # one per group, kept: progress asks every second (it never joins the group)
            consumer = Consumer({**self._config, "group.id": group, "enable.auto.commit": False})
            self._group_consumers[group] = consumer
        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions(t))]
        out: dict[str, int] = defaultdict(int)
        for tp in consumer.committed(tps, timeout=10) if tps else []:
            out[tp.topic] += max(tp.offset, 0)
        return {t: out.get(t, 0) for t in topics}

    def group_lag(self, group: str, topics: list[str], role: str = "", timeout: float = 10.0) -> GroupLag:
        """Lag of consumer group ``group`` on every partition of ``topics``, from the broker alone: committed
        offsets (OffsetFetch), watermarks (ListOffsets), the members holding each partition (DescribeGroups) and,
        per lagging partition, the timestamp of the first record the group has not processed (one small fetch).
        Missing topics are skipped. Broker errors raise ``KafkaException``."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions(t))]
        if not tps:
            return summarise(group, role, "", 0, [], {}, {}, int(time.time() * 1000))
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(tp.topic, tp.partition) for tp in tps])]
        fetched = self._admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result()
        committed = {(tp.topic, tp.partition): tp.offset for tp in fetched.topic_partitions or []}
        marks: dict[tuple[str, int], list[int]] = {}
        for spec, index in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 1)):
            futures = self._admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
            for tp, future in futures.items():
                marks.setdefault((tp.topic, tp.partition), [0, 0])[index] = max(0, future.result().offset)
        state, members, owners = self._describe_group(group, timeout)
        rows = [(t, p, committed.get((t, p)), low, high) for (t, p), (low, high) in marks.items()]
        starts = {(t, p): next_record_offset(c, low) for t, p, c, low, high in rows if lag_records(c, low, high)}
        waiting_since = self._record_timestamps(starts, timeout)
        return summarise(group, role, state, members, rows, waiting_since, owners, int(time.time() * 1000))

    def _describe_group(self, group: str, timeout: float) -> tuple[str, int, dict[tuple[str, int], str]]:
        """(state, member count, owner per partition) of a group; an unknown group is ("Dead", 0, {})."""
        description = self._admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()
        owners: dict[tuple[str, int], str] = {}
        for member in description.members or []:
            who = f"{member.client_id}@{str(member.host).lstrip('/')}"
            assignment = member.assignment.topic_partitions if member.assignment is not None else []
            for tp in assignment or []:
                owners[(tp.topic, tp.partition)] = who
        state = getattr(description.state, "name", str(description.state)).title().replace("_", "")
        return state, len(description.members or []), owners

    def _record_timestamps(self, starts: dict[tuple[str, int], int], timeout: float) -> dict[tuple[str, int], int]:
        """Timestamp (ms) of the record at offset ``starts[(topic, partition)]`` (or the next one that exists)."""
        from confluent_kafka import Consumer, TopicPartition

        if not starts:
            return {}
        if self._reader is None:
            self._reader = Consumer(
                {
                    **self._config,
                    "group.id": "mdpipe-status-reader",  # never subscribes or commits: assign() only
                    "enable.auto.commit": False,
                    "fetch.max.bytes": 1 << 20,  # one record per partition is all it needs
                    "max.partition.fetch.bytes": 64 << 10,
                }
            )
        reader = self._reader
        reader.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
        found: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout
        try:
            while len(found) < len(starts) and time.monotonic() < deadline:
                for msg in reader.consume(len(starts), 0.2):
                    if msg.error() is not None:
                        continue
                    key = (msg.topic(), msg.partition())
                    if key in starts and key not in found:
                        kind, stamp = msg.timestamp()
                        found[key] = stamp if kind != 0 else -1  # 0 = TIMESTAMP_NOT_AVAILABLE
        finally:
            reader.unassign()
        return {k: v for k, v in found.items() if v > 0}

    def close(self) -> None:
        for consumer in self._group_consumers.values():
            consumer.close()
        if self._reader is not None:
            self._reader.close()
