"""Dedup benchmark baseline: a plain confluent-kafka batch consumer reading the raw topics and doing nothing."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

__all__ = ["drain"]


def drain(bootstrap: str, topics: list[str], batch: int = 10000) -> tuple[int, float]:
    """Read every record of ``topics`` from the start to their current end; return (records, seconds)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-baseline-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    try:
        meta = consumer.list_topics(timeout=15)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in meta.topics[topic].partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
                if high > 0:
                    ends[(topic, p)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        remaining = set(ends)
        count = 0
        first = 0.0
        while remaining:
            msgs = consumer.consume(batch, timeout=1.0)
            if msgs and not first:
                first = time.perf_counter()
            for msg in msgs:
                if msg.error():
                    continue
                count += 1
                tp = (msg.topic(), msg.partition())
                if msg.offset() + 1 >= ends[tp]:
                    remaining.discard(tp)
        return count, time.perf_counter() - first
    finally:
        consumer.close()
