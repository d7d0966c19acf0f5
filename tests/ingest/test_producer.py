"""RawProducer: a full queue spills to the spool, the spool survives a restart and drains into the topic."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_broker_spools_and_close_keeps_everything(tmp_path: Path) -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), queue_max=10, warm_topics={})
    for i in range(50):
        producer.send("raw.g1", b"M", f"v{i}".encode())
    assert producer.spooling and len(producer.spool) == 40
    producer.close(timeout=0.5)
    # the 10 queued in librdkafka were purged into the spool at close: nothing lost
    values = sorted(v for seg in Spool(tmp_path, 1 << 20).segments() for _, _, v in Spool.read(seg))
    assert values == sorted(f"v{i}".encode() for i in range(50))


@pytest.mark.integration
def test_spool_left_by_a_previous_run_is_delivered(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    (topic,) = make_topics(1, partitions=3)
    spool = Spool(tmp_path, 1 << 20, segment_bytes=100)
    for i in range(30):
        spool.append(topic, f"M{i % 4}".encode(), f"v{i}".encode())
    spool.close()
    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap))
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), warm_topics={topic: 3})
    assert producer.spooling
    producer.send(topic, b"M0", b"live")  # goes behind the spooled records
    deadline = time.monotonic() + 30
    while (producer.spooling or producer.queued) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.05)
    producer.close(5)
    assert len(producer.spool) == 0 and not list(tmp_path.glob("*.spool"))
    got = ih.read_topic(kafka_bootstrap, topic)
    assert sorted(v for _, v in got) == sorted([f"v{i}".encode() for i in range(30)] + [b"live"])
    m0 = [v for k, v in got if k == b"M0"]
    assert m0[-1] == b"live" and m0[0] == b"v0"  # per-key order kept


@pytest.mark.integration
def test_permanent_error_drops_and_counts_instead_of_blocking_the_spool(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    (topic,) = make_topics(1, partitions=3)
    spool = Spool(tmp_path, 1 << 20, segment_bytes=100)
    for i in range(6):  # a leftover for a topic that no longer exists, then good records
        spool.append("gone-topic-" + topic if i < 2 else topic, b"M", f"v{i}".encode())
    spool.close()
    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), topic_metadata_propagation_max_ms=500)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), warm_topics={topic: 3})
    deadline = time.monotonic() + 60
    while (producer.spooling or producer.queued) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.05)
    producer.close(5)
    assert not producer.spooling and len(producer.spool) == 0
    assert producer.permanent_failures == 2 and producer.spool.dropped == 2
    assert sorted(v for _, v in ih.read_topic(kafka_bootstrap, topic)) == [f"v{i}".encode() for i in range(2, 6)]


def test_oversized_frame_is_dropped_and_counted_not_raised(tmp_path: Path) -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), message_max_bytes=2000)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), warm_topics={})
    producer.send("raw.g1", b"M", b"x" * 10_000)  # librdkafka refuses it synchronously (MSG_SIZE_TOO_LARGE)
    producer.send("raw.g1", b"M", b"small")
    assert producer.permanent_failures == 1 and producer.spool.dropped == 1
    assert producer.sent == 1
    producer.close(timeout=0.2)
