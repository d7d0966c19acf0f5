"""Bundles (gather.bundle_max_bytes, schemas.raw_record): a release's frames of one partition in one Kafka record, on
the real broker; and every count of the producer (sent, acked, spooled, dropped) in frames, not records."""

from __future__ import annotations

import random
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
    """A frame naming its market, padded with bytes that do not compress (the raw topics' batches are lz4)."""
    head = f"{market}|{i}|".encode()
    return head + random.Random(i).randbytes(max(0, size - len(head)))


def _market(frame: bytes) -> bytes:
    return frame.split(b"|", 1)[0]


def _read(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of ``topic``: (its real partition, key, value), each partition in offset order."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{time.time_ns()}", "enable.auto.commit": False}
    )
    try:
        out: list[tuple[int, bytes | None, bytes]] = []
        for p in range(PARTS):
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            consumer.assign([TopicPartition(topic, p, 0)])
            got = 0
            deadline = time.monotonic() + 30
            while got < high and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    if msg.error() is None:
                        out.append((msg.partition(), msg.key(), msg.value()))
                        got += 1
        return out
    finally:
        consumer.close()


def _producer(
    bootstrap: str, spool: Path, limit: int, known: dict[str, int] | None, warm: dict[str, int] | None = None
) -> RawProducer:
    conf = producer_config(KafkaConfig(bootstrap_servers=bootstrap), linger_ms=1)
    warm = dict(known or {}) if warm is None else warm
    return RawProducer(conf, Spool(spool, 1 << 24), warm_topics=warm, bundle_max_bytes=limit, known_partitions=known)


def _hand_over(
    producer: RawProducer, raw: str, releases: int, big: tuple[int, int] | None = None
) -> list[tuple[bytes, bytes]]:
    handed: list[tuple[bytes, bytes]] = []
    before = producer.acked  # acked counts every frame the producer ever had acknowledged
    for release in range(releases):
        for i in range(150):
            market = f"MKT-{(i * 7 + release) % 20:03d}".encode()
            size = 3000 if (release, i) == big else 40
            frame = _frame(market.decode(), release * 1000 + i, size)
            producer.held.append((raw, market, frame))
            handed.append((market, frame))
        producer.release()
    deadline = time.monotonic() + 30
    while producer.acked < before + len(handed) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.05)
    return handed


def _by_partition(records: list[tuple[int, bytes | None, bytes]]) -> dict[int, list[bytes]]:
    got: dict[int, list[bytes]] = defaultdict(list)
    for partition, key, value in records:
        for frame in frames_of(value):
            assert partition_for(_market(frame), PARTS) == partition, "a frame on a partition not its market's"
            got[partition].append(frame)  # type: ignore[arg-type]
        if not is_bundle(value):
            assert _market(value) == key
    return got


def _decodable_frames(n: int) -> list[tuple[bytes, bytes]]:
    """(market, encoded RawFrame) pairs over 5 markets: frames the producer can decode (it keys each by its own
    market when it splits a bundle)."""
    from schemas import RawFrame, encode_raw

    out = []
    for i in range(n):
        market = f"MKT-{i % 5}"
        frame = RawFrame(venue="v", gatherer="g1", conn=1, sid=1, seq=i, recv_ns=i, kind="trade", market=market,
                         event_key=f"t:{i}", payload=random.Random(i).randbytes(60))  # fmt: skip
        out.append((market.encode(), encode_raw(frame)))
    return out


def _assert_each_frame_once_on_its_partition(
    records: list[tuple[int, bytes | None, bytes]], handed: list[tuple[bytes, bytes]]
) -> None:
    """Every handed frame read back exactly once, each record on its key's partition."""
    got: dict[int, list[bytes]] = defaultdict(list)
    for partition, key, value in records:
        for frame in frames_of(value):
            assert partition_for(key or b"", PARTS) == partition
            got[partition].append(frame)  # type: ignore[arg-type]
    for p in range(PARTS):
        assert sorted(got[p]) == sorted(f for m, f in handed if partition_for(m, PARTS) == p)


@pytest.mark.integration
def test_a_release_goes_out_in_one_bundle_per_partition_in_order(
    kafka_bootstrap: str, make_topics: Any, tmp_path: Path
) -> None:
    (raw,) = make_topics(1, partitions=PARTS)
    producer = _producer(kafka_bootstrap, tmp_path, 2000, {raw: PARTS})
    handed = _hand_over(producer, raw, 3, big=(1, 75))  # one frame larger than a bundle may be: it goes alone
    assert producer.sent == producer.acked == len(handed)  # frames, not records

    records = _read(kafka_bootstrap, raw)
    assert len(records) < len(handed) // 10  # bundled: 3 releases x 3 partitions x a few bundles of 2,000 bytes
    assert all(len(v) + len(k or b"") <= 2000 - 36 or not is_bundle(v) for _, k, v in records)
    big = [v for _, _, v in records if len(v) >= 3000]
    assert len(big) == 1 and not is_bundle(big[0])
    got = _by_partition(records)
    for p in range(PARTS):  # every frame once, in the order handed over, in its own partition
        assert got[p] == [f for m, f in handed if partition_for(m, PARTS) == p]


@pytest.mark.integration
def test_bundles_wait_for_the_partition_count_the_broker_reports(
    kafka_bootstrap: str, make_topics: Any, tmp_path: Path
) -> None:
    """A producer that does not know the topic's count (a broker away at start, whose deferred check has not passed)
    sends one frame per record, even with a count for its warm-up (the config's, here twice the topic's): grouping
    by a count the topic does not have would put frames on partitions that are not theirs. Once it knows the count
    (ingest.outage's deferred check), it bundles."""
    (raw,) = make_topics(1, partitions=PARTS)
    producer = _producer(kafka_bootstrap, tmp_path, 2000, None, warm={raw: 2 * PARTS})
    handed = _hand_over(producer, raw, 1)
    assert len(_read(kafka_bootstrap, raw)) == len(handed)
    producer.know_partitions(raw, PARTS)
    handed += _hand_over(producer, raw, 2)
    assert producer.acked == len(handed)
    records = _read(kafka_bootstrap, raw)
    assert len(records) < 150 + 40
    got = _by_partition(records)
    for p in range(PARTS):
        assert got[p] == [f for m, f in handed if partition_for(m, PARTS) == p]


@pytest.mark.integration
def test_bundles_stay_under_the_clients_record_limit(kafka_bootstrap: str, make_topics: Any, tmp_path: Path) -> None:
    """gather.bundle_max_bytes above the client's message.max.bytes: bundles are cut to the client's limit, key and
    record overhead included, so librdkafka never refuses one (it would have dropped every frame in it)."""
    (raw,) = make_topics(1, partitions=PARTS)
    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), linger_ms=1, message_max_bytes=2000)
    producer = RawProducer(
        conf,
        Spool(tmp_path, 1 << 24),
        warm_topics={raw: PARTS},
        bundle_max_bytes=64 * 1024,
        known_partitions={raw: PARTS},
    )
    handed = _hand_over(producer, raw, 2)
    assert producer.acked == len(handed) and producer.spool.dropped == 0 and not producer.spooling
    records = _read(kafka_bootstrap, raw)
    assert any(is_bundle(v) for _, _, v in records) and all(len(v) < 2000 for _, _, v in records)


@pytest.mark.integration
def test_a_bundle_refused_for_its_size_goes_again_frame_by_frame(
    kafka_bootstrap: str, make_topics: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle refused for its size (here by librdkafka at produce(), the producer's margin for the key and the
    record overhead taken away; a topic whose max.message.bytes is below the bundle refuses it the same way, in its
    delivery report): its frames go to the spool and are replayed one per record, each keyed by its own market,
    none dropped."""
    monkeypatch.setattr("ingest.producer._RECORD_OVERHEAD", -200)
    (raw,) = make_topics(1, partitions=PARTS)
    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), linger_ms=1, message_max_bytes=2000)
    producer = RawProducer(
        conf, Spool(tmp_path, 1 << 24), warm_topics={raw: PARTS}, bundle_max_bytes=2000, known_partitions={raw: PARTS}
    )
    handed = _decodable_frames(60)
    producer.held.extend((raw, market, frame) for market, frame in handed)
    producer.release()
    assert producer.spooling and producer.spool.dropped == 0  # refused at produce(): its frames went to the spool
    deadline = time.monotonic() + 30
    while (producer.acked < len(handed) or producer.spooling) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.05)
    assert producer.spool.dropped == 0 and producer.permanent_failures == 0
    _assert_each_frame_once_on_its_partition(_read(kafka_bootstrap, raw), handed)


@pytest.mark.integration
def test_a_spooled_bundle_refused_at_its_replay_goes_again_frame_by_frame(
    kafka_bootstrap: str, make_topics: Any, tmp_path: Path
) -> None:
    """A bundle spooled under one client limit and replayed under a lower one (a gatherer restarted with a smaller
    ``message.max.bytes``): librdkafka refuses it at ``produce()`` during the replay; its frames go behind what the
    spool holds, one per record, each keyed by its own market, and are replayed in turn: none dropped, none twice."""
    (raw,) = make_topics(1, partitions=PARTS)
    dead = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    first = RawProducer(
        dead,
        Spool(tmp_path, 1 << 24),
        warm_topics={raw: PARTS},
        bundle_max_bytes=1 << 16,
        known_partitions={raw: PARTS},
    )
    first.spooling = True  # the broker is away: the release goes to the spool, in bundles
    handed = _decodable_frames(90)
    first.held.extend((raw, market, frame) for market, frame in handed)
    first.release()
    first.spool.flush()
    spooled = [v for seg in first.spool.segments() for _, _, v in Spool.read(seg)]
    assert any(is_bundle(v) and len(v) > 2000 for v in spooled)  # what the lower limit will refuse
    first.close(timeout=0.5)

    conf = producer_config(KafkaConfig(bootstrap_servers=kafka_bootstrap), linger_ms=1, message_max_bytes=2000)
    second = RawProducer(
        conf, Spool(tmp_path, 1 << 24), warm_topics={raw: PARTS}, bundle_max_bytes=2000, known_partitions={raw: PARTS}
    )
    assert second.spooling
    deadline = time.monotonic() + 60
    while (second.spooling or len(second.spool)) and time.monotonic() < deadline:
        second.service()
        time.sleep(0.05)
    second.close(timeout=10)
    assert second.failed > 0  # refused at produce() during the replay
    assert not second.spooling and second.spool.dropped == 0 and second.permanent_failures == 0
    records = _read(kafka_bootstrap, raw)
    assert all(len(value) <= 2000 for _, _, value in records)
    _assert_each_frame_once_on_its_partition(records, handed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spooled_and_dropped_count_the_frames_of_a_bundle(tmp_path: Path) -> None:
    """No broker: librdkafka's queue takes one record, the spool the next ones until it is full, the rest are
    dropped; each count is in frames, and together they account for every frame handed over."""
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    spool = Spool(tmp_path, 4000)
    producer = RawProducer(
        conf,
        spool,
        queue_max=1,
        warm_topics={"raw.g1": PARTS},
        bundle_max_bytes=1000,
        known_partitions={"raw.g1": PARTS},
    )
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
