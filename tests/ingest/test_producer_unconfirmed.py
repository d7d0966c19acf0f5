"""A success report without an offset is not proof that the broker stored the record (RawProducer keeps the record).

librdkafka reports an "implicitly acked" record as delivered without an offset: its request failed with a not-stored
error (NOT_LEADER_FOR_PARTITION) while the producer's next request to that partition succeeded, which a broker with
no state yet for that producer id accepts whatever its sequence, so the record is lost (see ingest.producer). These
tests stand fake librdkafka producers in for the real ones, hand them records through the real code paths and serve
the reports a real one gives in that case.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config


class _Report:
    """What confluent-kafka hands a delivery callback (``offset()`` is None when librdkafka has no offset)."""

    def __init__(self, topic: str, key: bytes | None, value: bytes, offset: int | None) -> None:
        self._topic, self._key, self._value, self._offset = topic, key, value, offset

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int | None:
        return self._offset

    def partition(self) -> int:
        return 0

    def latency(self) -> float:
        return 0.001


class _FakeProducer:
    """Holds what it is handed until the test serves a report for each record (in the order produced)."""

    def __init__(self, default_cb: Any) -> None:
        self.default_cb = default_cb
        self.pending: list[tuple[str, bytes | None, bytes, Any]] = []
        self.produced: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None) -> None:
        self.pending.append((topic, key, value, on_delivery or self.default_cb))
        self.produced.append(value)

    def report(self, offsets: list[int | None]) -> None:
        """Serve one success report per offset (None: delivered without an offset, as for an implicit ack)."""
        for offset in offsets:
            topic, key, value, cb = self.pending.pop(0)
            cb(None, _Report(topic, key, value, offset))

    def poll(self, timeout: float | None = None) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return len(self.pending)

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        assert not self.pending, "the tests purge only empty producers"

    def __len__(self) -> int:
        return len(self.pending)


def _producer(spool_dir: Path) -> tuple[RawProducer, _FakeProducer, _FakeProducer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}"), linger_ms=1)
    conf["log_level"] = 0
    producer = RawProducer(conf, Spool(spool_dir, 1 << 24), queue_max=1000, warm_topics={})
    quiet, loud = _FakeProducer(producer._on_failure), _FakeProducer(producer._on_delivery)
    producer._quiet, producer._loud = quiet, loud  # type: ignore[assignment]
    producer._use(quiet)  # type: ignore[arg-type]
    return producer, quiet, loud


def test_replayed_record_reported_without_offset_keeps_its_segment_for_another_replay(tmp_path: Path) -> None:
    producer, _, loud = _producer(tmp_path)
    producer.hold = True  # the broker is away: frames go to the spool
    producer.divert()
    for i in range(3):
        producer.send("raw.g1", b"M", f"v{i}".encode())
    producer.hold = False  # back: replayed through the loud producer
    producer.service()
    assert loud.produced == [b"v0", b"v1", b"v2"]
    loud.report([10, None, 11])  # v1: "delivered", no offset (an implicit ack)
    assert len(producer.spool) == 3 and producer.spool.segments(), "the segment stays on disk (old code deleted it)"
    assert producer.unconfirmed == 1
    producer.service()  # the kept segment is replayed whole again
    assert loud.produced == [b"v0", b"v1", b"v2"] * 2
    loud.report([12, 13, 14])
    producer.service()
    assert len(producer.spool) == 0 and not producer.spool.segments() and not producer.spooling
    assert producer.spool.dropped == 0


def test_live_frame_reported_without_offset_goes_to_the_spool(tmp_path: Path) -> None:
    producer, _, loud = _producer(tmp_path)
    producer._use(loud)  # type: ignore[arg-type]  # (a latency-sample release goes through the loud producer)
    producer.send("raw.g1", b"M", b"v0")
    producer.send("raw.g1", b"M", b"v1")
    loud.report([5, None])
    producer.spool.flush()
    assert [v for seg in producer.spool.segments() for _, _, v in Spool.read(seg)] == [b"v1"], "old code: []"
    assert producer.acked == 1, "only v0 counts as acknowledged"
    assert producer.unconfirmed == 1 and producer.spooling


class _Partitioned(_FakeProducer):
    """A fake whose reports carry the partition of their key (``PARTS``)."""

    PARTS = {b"A": 0, b"B": 1}

    def report(self, offsets: list[int | None]) -> None:
        for offset in offsets:
            topic, key, value, cb = self.pending.pop(0)
            report = _Report(topic, key, value, offset)
            report.partition = lambda key=key: self.PARTS.get(key or b"", 0)  # type: ignore[method-assign]
            cb(None, report)


def _warming(tmp_path: Path) -> tuple[RawProducer, _Partitioned, _Partitioned]:
    """A producer whose raw topic ``raw.g1`` has 2 partitions to warm, its librdkafka producers faked (the one in use
    is the one the constructor chose)."""
    conf = producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:9"), linger_ms=1)
    conf["log_level"] = 0
    producer = RawProducer(conf, Spool(tmp_path, 1 << 24), queue_max=1000, warm_topics={"raw.g1": 2})
    starts_loud = producer._p is producer._loud
    quiet, loud = _Partitioned(producer._on_failure), _Partitioned(producer._on_delivery)
    producer._quiet, producer._loud = quiet, loud  # type: ignore[assignment]
    producer._use(loud if starts_loud else quiet)  # type: ignore[arg-type]
    return producer, quiet, loud


def _release(producer: RawProducer, *frames: tuple[str, bytes, bytes]) -> None:
    producer.held.extend(frames)
    producer.release()


def test_live_frames_use_the_loud_producer_until_every_partition_took_a_stored_record(tmp_path: Path) -> None:
    """A new producer id's first write to a partition is the one an implicit ack can lose; the quiet producer would
    lose it without a word. So frames go through the loud producer until each partition of the raw topic has stored
    one of its records (a report with an offset); only then does the quiet producer take over."""
    producer, quiet, loud = _warming(tmp_path)
    _release(producer, ("raw.g1", b"A", b"a0"))
    assert loud.produced == [b"a0"]
    loud.report([0])  # partition 0 stored a record; partition 1 has not been written yet
    _release(producer, ("raw.g1", b"B", b"b0"))
    assert loud.produced == [b"a0", b"b0"], "partition 1's first write went to the quiet producer (old code)"
    assert quiet.produced == []
    loud.report([0])
    _release(producer, ("raw.g1", b"B", b"b1"))
    assert quiet.produced == [b"b1"], "every partition took a stored record: the quiet producer takes over"
    assert producer.acked == 2


def test_other_topics_neither_warm_the_raw_topic_nor_keep_the_producer_loud(tmp_path: Path) -> None:
    """Market references stored in every partition of their topic say nothing of the raw topic's partitions, and a
    dead letter (one partition of its topic) must not keep the gatherer loud for good."""
    producer, quiet, loud = _warming(tmp_path)
    _release(producer, ("markets", b"A", b"m0"), ("markets", b"B", b"m1"), ("dlq", None, b"d0"))  # type: ignore[arg-type]
    loud.report([0, 0, 0])
    _release(producer, ("raw.g1", b"A", b"a0"), ("raw.g1", b"B", b"b0"))
    assert quiet.produced == [] and loud.produced[-2:] == [b"a0", b"b0"], "raw's first writes stay on the loud one"
    loud.report([1, 1])
    _release(producer, ("raw.g1", b"A", b"a1"))
    assert quiet.produced == [b"a1"]


def test_a_recreated_producer_warms_up_again(tmp_path: Path) -> None:
    producer, quiet, loud = _warming(tmp_path)
    _release(producer, ("raw.g1", b"A", b"a0"), ("raw.g1", b"B", b"b0"))
    loud.report([0, 0])
    _release(producer, ("raw.g1", b"A", b"a1"))
    assert quiet.produced == [b"a1"]
    quiet.pending.clear()  # acknowledged (the quiet producer reports nothing)
    producer._recreate()  # a fatal librdkafka error: new producers, a new producer id
    assert producer._p is producer._loud, "the new producer id's first writes go through the loud producer"
