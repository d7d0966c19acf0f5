"""Bundles (gather.bundle_max_bytes, schemas.raw_record): a release's frames of one partition in one Kafka record, on
the real broker; and every count of the producer (sent, acked, spooled, dropped) in frames, not records."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config
from mdpipe.partitioner import partition_for
from schemas.raw_record import frames_of, is_bundle

PARTS = 3


def _frame(market: str, i: int, size: int = 40) -> bytes:
    head = f"{market}|{i}|".encode()
    return head + b"x" * max(0, size - len(head))


def _market(frame: bytes) -> bytes:
    return frame.split(b"|", 1)[0]


@pytest.mark.integration
def test_a_release_goes_out_in_one_bundle_per_partition_in_order(
    kafka_bootstrap: str, make_topics: Any, tmp_path: Path, ih: Any
) -> None:
    (raw,) = make_topics(1, partitions=PARTS)
    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), linger_ms=1)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 24), warm_topics={raw: PARTS}, bundle_max_bytes=2000)
    handed: list[tuple[bytes, bytes]] = []
    # warm-up (ingest.producer): the reporting producer stores a record in every partition; the releases below
    # then go through the quiet one, whose acknowledged frames are counted by release, not by report
    for i, market in enumerate((b"W-0", b"W-1", b"W-2", b"W-4")):
        producer.held.append((raw, market, _frame(market.decode(), i)))
        handed.append((market, producer.held[-1][2]))
    assert {partition_for(m, PARTS) for m, _ in handed} == set(range(PARTS))
    producer.release()
    assert producer.flush(30) == 0
    producer._next_sample = float("inf")  # no latency sample: every release below goes to the quiet producer
    for release in range(3):
        for i in range(150):
            market = f"MKT-{(i * 7 + release) % 20:03d}".encode()
            size = 3000 if (release, i) == (1, 75) else 40  # larger than a bundle may be: it goes alone
            frame = _frame(market.decode(), release * 1000 + i, size)
            producer.held.append((raw, market, frame))
            handed.append((market, frame))
        producer.release()
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 30
    while producer.acked < len(handed) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.05)
    assert producer._quiet_sent > 0  # the releases went through the quiet producer
    assert producer.sent == producer.acked == len(handed)  # frames, not records

    records = ih.read_topic(kafka_bootstrap, raw)
    assert len(records) < len(handed) // 10  # bundled: 3 releases x 3 partitions x a few bundles of 2,000 bytes
    got: dict[int, list[bytes]] = defaultdict(list)
    for key, value in records:
        partition = partition_for(key, PARTS)
        assert len(value) <= 2000 or not is_bundle(value)
        for frame in frames_of(value):
            assert partition_for(_market(frame), PARTS) == partition  # the bundle's key puts it on its frames'
            got[partition].append(frame)
        if not is_bundle(value):
            assert _market(value) == key
    big = [v for _, v in records if len(v) >= 3000]
    assert len(big) == 1 and not is_bundle(big[0])
    for p in range(PARTS):  # every frame once, in the order handed over, in its partition
        assert got[p] == [f for m, f in handed if partition_for(m, PARTS) == p]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spooled_and_dropped_count_the_frames_of_a_bundle(tmp_path: Path) -> None:
    """No broker: librdkafka's queue takes one record, the spool the next ones until it is full, the rest are
    dropped; each count is in frames, and together they account for every frame handed over."""
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    spool = Spool(tmp_path, 4000)
    producer = RawProducer(conf, spool, queue_max=1, warm_topics={"raw.g1": PARTS}, bundle_max_bytes=1000)
    frames = [(f"M{i % 9}".encode(), _frame(f"M{i % 9}", i, 60)) for i in range(200)]
    for market, frame in frames:
        producer.held.append(("raw.g1", market, frame))
    producer.release()
    assert producer.spooling
    assert producer.sent >= 2  # one record of several frames in librdkafka's queue
    assert producer.spool.dropped > 0
    assert producer.sent + producer.spooled + producer.spool.dropped == len(frames)
    spool.flush()
    spooled = [f for seg in spool.segments() for _, _, v in Spool.read(seg) for f in frames_of(v)]
    assert len(spooled) == producer.spooled
    producer.close(timeout=0.5)
