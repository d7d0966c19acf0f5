"""A native dedup worker (`mdpipe dedup` subprocess, real broker) whose group's committed offset on a raw partition is
below that partition's log start (records deleted before the group read them) says so: one warning naming the
partition and the count, and the count on /metrics. Retention is played by the admin API's delete_records, which
moves a partition's log start at once and exactly."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from dedup_stream.synth import gatherer_copies, produce_frames, venue_events

pytestmark = pytest.mark.integration

COMMITTED = 2  # the group's committed offset on the chosen partition
LOG_START = 9  # the log start after the deletion: records 2..8 expired unread


def _high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def _commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        consumer.close()


def _delete_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(topic, partition, offset)], operation_timeout=30).values():
        assert future.result().low_watermark == offset  # the partition's new log start


def _wait_for_line(worker: Any, event: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in worker.log().splitlines() if f"event={event} " in line]
        if found:
            return found[0]
        assert worker.proc.poll() is None, worker.log()[-3000:]
        assert time.monotonic() < deadline, f"no {event} line in {timeout_s}s:\n{worker.log()[-3000:]}"
        time.sleep(0.2)


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


def test_records_deleted_before_the_group_read_them_are_logged_and_counted(dedup_topics: Any, tmp_path: Path) -> None:
    from tests.dedup_stream.conftest import WorkerLauncher

    topics = dedup_topics
    raw = topics.raw("g1")
    frames = gatherer_copies(venue_events(300, markets=30, seed=11), "g1")
    produce_frames({"bootstrap.servers": topics.bootstrap}, raw, frames)
    highs = _high_watermarks(topics.bootstrap, raw, topics.partitions)
    partition = max(highs, key=lambda p: highs[p])
    assert highs[partition] > LOG_START
    app_id = topics.app_id("expired")
    _commit(topics.bootstrap, app_id, raw, partition, COMMITTED)
    _delete_before(topics.bootstrap, raw, partition, LOG_START)

    worker = WorkerLauncher(tmp_path, engine="native").start(topics, "expired", "w1")
    try:
        fields = _fields(_wait_for_line(worker, "raw_expired_unread", 90))
        assert fields["level"] == "warning"
        assert (fields["topic"], fields["partition"]) == (raw, str(partition))
        assert (fields["committed"], fields["log_start"], fields["records"]) == ("2", "9", "7")
        # librdkafka's reset of the same fetch position: read from its log line, counted, not added again
        reset = _fields(_wait_for_line(worker, "raw_offset_reset", 30))
        assert (reset["topic"], reset["partition"], reset["at_offset"]) == (raw, str(partition), "2")
        assert reset["reported_at_assignment"] == "True"
        expected = sum(highs.values()) - LOG_START
        deadline = time.monotonic() + 60
        while worker.frames_in() < expected:  # every record left is read: from the log start on that partition
            assert time.monotonic() < deadline, f"read {worker.frames_in()} of {expected} frames"
            time.sleep(0.3)
        time.sleep(1.5)  # a 1-s tick after the last frame: resets are counted there
        assert worker.frames_in() == expected
        lines = worker.metric_lines("mdpipe_dedup_raw_expired_records_total", "mdpipe_dedup_raw_offset_resets_total")
        assert f'mdpipe_dedup_raw_expired_records_total{{topic="{raw}"}} 7.0' in lines
        assert f'mdpipe_dedup_raw_offset_resets_total{{topic="{raw}"}} 1.0' in lines
        others = [line for line in lines if f'topic="{raw}"' not in line]
        assert len(others) == 4 and all(line.endswith(" 0.0") for line in others)  # raw.g2, raw.g3: from 0
        assert worker.log().count("event=raw_expired_unread") == 1  # nothing said of the other partitions
    finally:
        worker.stop()
