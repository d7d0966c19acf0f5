"""Read-only probes of a running pipeline: topic end offsets, consumer-group positions, scraped stage metrics.

Used by `mdpipe status`, `make demo` (progress and drain detection) and the end-to-end tests. Nothing
here depends on a stage's internals: progress is measured where the data is (Kafka offsets, the sink's
committed offsets, each stage's Prometheus endpoint).
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

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
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        self._config = client_config
        self._admin = AdminClient(client_config)
        self._consumer = Consumer({**client_config, "group.id": "mdpipe-probe", "enable.auto.commit": False})
        self._partitions: dict[str, int] = {}
        self._group_consumers: dict[str, Any] = {}

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
        """Sum over partitions of the high watermark (records ever written, for non-compacted topics)."""
        from confluent_kafka import TopicPartition

        out: dict[str, int] = {}
        for topic in topics:
            total = 0
            for p in range(self.partitions(topic)):
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
                total += max(high, 0)
            out[topic] = total
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

    def close(self) -> None:
        for consumer in self._group_consumers.values():
            consumer.close()
        self._consumer.close()
