"""RawProducer's delivery reports (issue 13): live frames cost no Python report each, and nothing else changes.

Live frames go to a librdkafka producer that reports failures only; the spool's replay and latency samples go to one
that reports every record, and frames switch between the two only when the other is empty. Judged against the real
broker: every frame handed over reaches the topic, each key's frames in the order they were handed over, ``acked``
counts them, latency samples still come, and the Python delivery callbacks served are far fewer than the frames.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ingest import producer as producer_module
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config

pytestmark = pytest.mark.integration

# keys of all 3 partitions of the test topic (murmur2): the producer warms up once each partition stored a frame
KEYS = [b"M0", b"M1", b"M2", b"M3", b"M4", b"M5", b"M6", b"M7"]


class _Reports:
    """Counts the successful delivery reports served through Python (RawProducer._on_delivery with no error)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ok = 0
        real = RawProducer._on_delivery

        def counting(producer: RawProducer, err: Any, msg: Any) -> None:
            if err is None:
                self.ok += 1
            real(producer, err, msg)

        monkeypatch.setattr(RawProducer, "_on_delivery", counting)


def _producer(
    bootstrap: str, spool_dir: Path, topic: str, queue_max: int = 200_000, segment_bytes: int = 16 << 20
) -> RawProducer:
    """A producer for ``topic`` (3 partitions), warming up on it as the gatherer's does."""
    conf = producer_config(KafkaConfig(bootstrap_servers=bootstrap), linger_ms=1)
    spool = Spool(spool_dir, 1 << 26, segment_bytes=segment_bytes)
    return RawProducer(conf, spool, queue_max=queue_max, warm_topics={topic: 3})


def _release_rounds(
    producer: RawProducer, topic: str, handed: list[tuple[bytes, bytes]], rounds: int, per: int
) -> None:
    """``rounds`` releases of ``per`` frames, ~20 ms apart (the gatherer's window), serving the producer between."""
    for _ in range(rounds):
        for _ in range(per):
            key = KEYS[len(handed) % len(KEYS)]
            value = f"live{len(handed)}".encode()
            producer.held.append((topic, key, value))
            handed.append((key, value))
        producer.release()
        producer.service()
        time.sleep(0.02)


def _settle(producer: RawProducer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (producer.spooling or producer.queued) and time.monotonic() < deadline:
        producer.service()
        time.sleep(0.02)
    assert not producer.spooling and producer.queued == 0, "the producer did not drain"


def _per_key(records: list[tuple[bytes | None, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for key, value in records:
        out.setdefault(key or b"", []).append(value)
    return out


def test_live_frames_are_acked_in_order_without_a_python_report_each(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (topic,) = make_topics(1, partitions=3)
    monkeypatch.setattr(producer_module, "LATENCY_SAMPLE_S", 0.1, raising=False)  # many switches in a short run
    reports = _Reports(monkeypatch)
    producer = _producer(kafka_bootstrap, tmp_path, topic)
    handed: list[tuple[bytes, bytes]] = []
    # warm-up: each librdkafka producer's first records wait for its topic metadata (~0.5 s), the loud one's too
    _release_rounds(producer, topic, handed, rounds=10, per=50)
    _settle(producer)
    assert producer.acked == len(handed)
    time.sleep(0.2)  # a latency sample is due: taken at the next release
    before, warm = reports.ok, len(handed)
    _release_rounds(producer, topic, handed, rounds=60, per=50)
    _settle(producer)
    assert producer.acked == len(handed) == 3500
    assert producer.latency_samples, "latency samples still come (from the sampled releases)"
    assert all(0 < s < 30 for s in producer.latency_samples)
    # one release in ~5 is sampled here (0.1 s): the others serve no Python callback per frame
    live, served = len(handed) - warm, reports.ok - before
    assert 0 < served <= live // 2, f"{served} delivery reports served through Python for {live} frames"
    producer.close(5)
    assert _per_key(ih.read_topic(kafka_bootstrap, topic)) == _per_key(list(handed))


def test_spool_replay_keeps_order_then_live_frames_go_back_to_reports_on_error_only(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small memory queue spills releases to the spool (while librdkafka still holds older frames); the spool is
    replayed (a report per record settles its segments) while frames keep coming; afterwards live frames are acked
    without a report each. Every frame reaches the topic once, in the order handed over per key."""
    (topic,) = make_topics(1, partitions=3)
    reports = _Reports(monkeypatch)
    producer = _producer(kafka_bootstrap, tmp_path, topic, queue_max=60, segment_bytes=2000)
    handed: list[tuple[bytes, bytes]] = []
    _release_rounds(producer, topic, handed, rounds=5, per=100)  # 60 fit, the rest of each release is spooled
    assert producer.spooled > 0
    _release_rounds(producer, topic, handed, rounds=40, per=10)  # replayed meanwhile, live frames queue behind
    _settle(producer)
    assert len(producer.spool) == 0 and not list(tmp_path.glob("*.spool")), "every replayed segment was settled"
    assert producer.acked == len(handed)
    after_replay, frames_before = reports.ok, len(handed)
    time.sleep(1.1)  # past the latency sample due now: one sampled release below, the others quiet
    _release_rounds(producer, topic, handed, rounds=40, per=10)  # (well within the queue: nothing spooled)
    _settle(producer)
    assert producer.acked == len(handed)
    live, served = len(handed) - frames_before, reports.ok - after_replay
    assert 0 < served <= live // 2, f"{served} reports served through Python for {live} live frames"
    producer.close(5)
    assert producer.spool.dropped == 0
    assert _per_key(ih.read_topic(kafka_bootstrap, topic)) == _per_key(list(handed))
