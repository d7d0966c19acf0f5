"""Raw records deleted by retention before the dedup worker read them: the pure decisions (no broker), the worker's
reports of them (a scripted consumer), and their counters on /metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

import dedup_stream.native as native
from dedup_stream.expiry import ExpiredCounts, OffsetReset, ResetWatch, expired_unread, parse_offset_reset
from dedup_stream.logic import Stats
from dedup_stream.metrics import DedupCollector
from dedup_stream.settings import DedupSettings
from mdpipe.config import DedupConfig

RAW = ["t.raw.g1", "t.raw.g2"]
# librdkafka's warning when a fetch fell below the log start (auto.offset.reset=earliest), as its logger receives it;
# the second form when it knows the log start from its last fetch
RESET_LINE = (
    "[thrd:main]: t.raw.g2 [1]: offset reset (at offset 5 (leader epoch -1), broker 1) to offset BEGINNING (leader "
    "epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range"
)
CACHED_LINE = (
    "[thrd:main]: t.raw.g1 [0]: offset reset (at offset 3 (leader epoch -1), broker 1) to cached BEGINNING offset "
    "offset 9 (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset "
    "out of range"
)


@pytest.mark.parametrize(
    ("committed", "low", "expired"),
    [
        (3, 10, 7),  # committed below the log start: 3..9 deleted unread
        (0, 1, 1),
        (10, 10, 0),  # the next record to read is the oldest left
        (12, 10, 0),
        (-1001, 10, 0),  # no committed offset: a new group starts at the oldest record on purpose
        (-1, 10, 0),
        (3, -1, 0),  # low watermark unknown
    ],
)
def test_expired_unread(committed: int, low: int, expired: int) -> None:
    assert expired_unread(committed, low) == expired


def test_parse_offset_reset_reads_topic_partition_and_offsets() -> None:
    reset = parse_offset_reset("OFFSET", RESET_LINE)
    assert reset is not None
    assert (reset.topic, reset.partition, reset.at, reset.to) == ("t.raw.g2", 1, 5, None)
    assert reset.reason.endswith("Broker: Offset out of range")
    cached = parse_offset_reset("OFFSET", CACHED_LINE)
    assert cached is not None and (cached.topic, cached.partition, cached.at, cached.to) == ("t.raw.g1", 0, 3, 9)
    assert expired_unread(cached.at, cached.to) == 6  # type: ignore[arg-type]


def test_parse_offset_reset_ignores_other_lines() -> None:
    assert parse_offset_reset("FAIL", RESET_LINE) is None
    assert parse_offset_reset("OFFSET", "[thrd:main]: t.raw.g1 [0]: stored offset 5, committed offset 4") is None


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str, tuple[Any, ...]]] = []

    def log(self, level: int, msg: str, *args: Any) -> None:
        self.calls.append((level, msg, args))


def test_reset_watch_passes_every_line_on_and_keeps_warned_resets_of_its_topics() -> None:
    inner = Recorder()
    watch = ResetWatch(inner, frozenset(RAW))
    other_topic = RESET_LINE.replace("t.raw.g2", "t.changelog")
    lines = [
        (logging.WARNING, "OFFSET", RESET_LINE),
        (logging.DEBUG, "OFFSET", CACHED_LINE),  # a logical start is debug-level: no loss
        (logging.WARNING, "OFFSET", other_topic),
        (logging.ERROR, "FAIL", "[thrd:main]: broker down"),
    ]
    for level, fac, text in lines:
        watch.log(level, "%s [%s] %s", fac, "rdkafka#consumer-1", text)
    assert [args[2] for _, _, args in inner.calls] == [text for _, _, text in lines]
    assert [(r.topic, r.partition, r.at) for r in watch.take()] == [("t.raw.g2", 1, 5)]
    assert watch.take() == []


def test_collector_exports_the_counters_per_topic_from_zero() -> None:
    counts = ExpiredCounts(RAW)
    counts.add_records("t.raw.g2", 7)
    counts.add_reset("t.raw.g2")
    registry = CollectorRegistry()
    registry.register(DedupCollector(Stats(), dict, lambda: 0, expired=counts))
    text = generate_latest(registry).decode()
    assert 'mdpipe_dedup_raw_expired_records_total{topic="t.raw.g1"} 0.0' in text
    assert 'mdpipe_dedup_raw_expired_records_total{topic="t.raw.g2"} 7.0' in text
    assert 'mdpipe_dedup_raw_offset_resets_total{topic="t.raw.g1"} 0.0' in text
    assert 'mdpipe_dedup_raw_offset_resets_total{topic="t.raw.g2"} 1.0' in text


# --- the worker's reports, with a scripted consumer ------------------------------------------------------------------
class OffsetsConsumer:
    """committed() and get_watermark_offsets() from fixed tables; records every call."""

    def __init__(self, committed: dict[tuple[str, int], int], low: dict[tuple[str, int], int]) -> None:
        self.committed_offsets, self.low = committed, low
        self.calls: list[str] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls.append(f"committed x{len(partitions)}")
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001))
                for tp in partitions]  # fmt: skip

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        assert not cached
        self.calls.append(f"watermarks {tp.topic}[{tp.partition}]")
        return self.low[(tp.topic, tp.partition)], 100


class FailingConsumer(OffsetsConsumer):
    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out"))


class NoOutput:
    def __init__(self, *args: Any) -> None:
        pass

    def put_changelog(self, partition: int, records: list[tuple[bytes, bytes]]) -> None:
        pass


class Events:
    """Stands for the worker's logger: records (event, fields) of every level."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.events.append((event, fields))


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> native.NativeWorker:
    monkeypatch.setattr(native, "NativeOutput", NoOutput)
    settings = DedupSettings(
        config=DedupConfig(app_id="t-app"),
        bootstrap_servers="127.0.0.1:1",  # never contacted: the consumer is a fake
        raw_topics=RAW,
        partitions=2,
        workdir=tmp_path / "dedup",
        events_topic="t.events",
        dlq_topic="t.dlq",
        replication_factor=1,
    )
    settings.workdir.mkdir(parents=True)
    return native.NativeWorker(settings)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The worker's log events (event, fields), every level."""
    recorder = Events()
    monkeypatch.setattr(native, "log", recorder)
    return recorder.events


def test_assignment_reports_records_below_the_log_start_with_one_committed_call(
    worker: native.NativeWorker, events: list[tuple[str, dict[str, Any]]]
) -> None:
    tps = [TopicPartition(t, p) for t in RAW for p in (0, 1)]
    committed = {("t.raw.g1", 0): 40, ("t.raw.g2", 1): 3, ("t.raw.g2", 0): 12}  # t.raw.g1[1]: nothing committed
    low = {("t.raw.g1", 0): 40, ("t.raw.g2", 1): 10, ("t.raw.g2", 0): 0}
    consumer = OffsetsConsumer(committed, low)
    worker._check_expired(consumer, tps)  # type: ignore[arg-type]
    assert consumer.calls[0] == "committed x4"
    assert sorted(consumer.calls[1:]) == ["watermarks t.raw.g1[0]", "watermarks t.raw.g2[0]", "watermarks t.raw.g2[1]"]
    assert events == [
        ("raw_expired_unread", {"topic": "t.raw.g2", "partition": 1, "committed": 3, "log_start": 10, "records": 7})
    ]
    assert worker.expired.records == {"t.raw.g1": 0, "t.raw.g2": 7}


def test_a_failed_check_is_a_warning_not_a_failed_assignment(
    worker: native.NativeWorker, events: list[tuple[str, dict[str, Any]]]
) -> None:
    worker._check_expired(FailingConsumer({}, {}), [TopicPartition(RAW[0], 0)])  # type: ignore[arg-type]
    assert [event for event, _ in events] == ["raw_expiry_check_failed"]


def test_running_resets_are_counted_and_the_one_seen_at_assignment_is_not_counted_twice(
    worker: native.NativeWorker, events: list[tuple[str, dict[str, Any]]]
) -> None:
    worker._report_expired("t.raw.g2", 1, committed=5, low=10)
    worker._consumer = OffsetsConsumer({}, {("t.raw.g1", 1): 30})  # type: ignore[assignment]
    watch = worker._reset_watch
    watch.resets += [
        OffsetReset("t.raw.g2", 1, 5, None, "out of range"),  # the loss the assignment reported
        OffsetReset("t.raw.g1", 0, 3, 9, "out of range"),  # a running worker fell below the log start
        OffsetReset("t.raw.g1", 1, 20, None, "out of range"),  # the same, offset gone to: the low watermark
    ]
    worker._tick()
    assert worker.expired.records == {"t.raw.g1": 6 + 10, "t.raw.g2": 5}
    assert worker.expired.resets == {"t.raw.g1": 2, "t.raw.g2": 1}
    resets = [fields for event, fields in events if event == "raw_offset_reset"]
    assert [(f["topic"], f["partition"], f.get("records"), f.get("reported_at_assignment")) for f in resets] == [
        ("t.raw.g2", 1, None, True),
        ("t.raw.g1", 0, 6, None),
        ("t.raw.g1", 1, 10, None),
    ]
