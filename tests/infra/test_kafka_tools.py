"""Kafka's own perf tools run from the native jars (benchmarks use them as the broker-ceiling baseline)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.kafka_native import kafka_tool_command, kafka_version

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not kafka_version(), reason="needs the native Kafka jars (mdpipe infra install)"),
]


def test_producer_performance_writes_the_records(kafka_bootstrap: str, make_topics: Callable[..., list[str]]) -> None:
    (topic,) = make_topics(partitions=3)
    cmd = kafka_tool_command(
        "org.apache.kafka.tools.ProducerPerformance",
        *("--topic", topic, "--num-records", "5000", "--record-size", "100", "--throughput", "-1"),
        *("--producer-props", f"bootstrap.servers={kafka_bootstrap}", "acks=1"),
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.match(r"5000 records sent, [\d.]+ records/sec", last), last
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "watermarks"})
    try:
        total = sum(
            high - low
            for low, high in (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(3))
        )
    finally:
        consumer.close()
    assert total == 5000
