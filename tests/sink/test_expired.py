"""A sink whose stored offset on an events partition is below that partition's log start (records deleted by
retention before it read them) says so: the count in its stats and on /metrics, and a warning naming the partition.
The consumer itself resets to the oldest record left and would say nothing. Retention is played by the admin API's
delete_records, which moves a partition's log start at once and exactly."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from bench.sink.data import make_events

pytestmark = pytest.mark.integration

LOST = 5  # records deleted past the sink's stored offset on one partition


def _watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)}
    finally:
        consumer.close()


def _expired_metric(topic: str) -> float:
    return REGISTRY.get_sample_value("mdpipe_sink_expired_records_total", {"topic": topic}) or 0.0


def test_records_deleted_past_the_stored_offset_are_counted_and_the_rest_loaded(sink_env: Any) -> None:
    topic, partitions = sink_env.names.events, sink_env.config.kafka.partitions
    bootstrap = sink_env.config.kafka.bootstrap_servers
    events = make_events(1200, markets=12, seed=21)
    sink_env.produce(events[:600])
    first = sink_env.run_loader("g-expired")
    assert first.rows == 600 and first.expired == 0
    stored = {p: high for p, (_, high) in _watermarks(bootstrap, topic, partitions).items()}
    sink_env.produce(events[600:])
    highs = {p: high for p, (_, high) in _watermarks(bootstrap, topic, partitions).items()}
    partition = max(highs, key=lambda p: highs[p] - stored[p])
    assert highs[partition] - stored[partition] > LOST
    cut = TopicPartition(topic, partition, stored[partition] + LOST)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures end with it
    for future in admin.delete_records([cut], operation_timeout=30).values():
        assert future.result(timeout=60).low_watermark == stored[partition] + LOST
    before = _expired_metric(topic)

    second = sink_env.run_loader("g-expired")

    assert second.expired == LOST
    assert _expired_metric(topic) - before == LOST
    assert second.rows == 600 - LOST  # everything the topic still held past the stored offsets
    assert sum(sink_env.counts().values()) == 1200 - LOST
