"""`mdpipe status` on the real broker: consumer-group lag per partition, in records and seconds, from Kafka alone
(no stage of this host announced, so it is what any host reaching the broker sees)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def test_status_reports_each_groups_lag_per_partition_from_the_broker(
    kafka_bootstrap: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from mdpipe.cli import main

    prefix = f"st{uuid.uuid4().hex[:8]}."
    raw1, raw2, events, markets = (f"{prefix}{n}" for n in ("raw.g1", "raw.g2", "events", "markets"))
    make_topics([raw1, raw2, events, markets], partitions=2)
    dedup_group, sink_group = f"{prefix}dedup", f"{prefix}sink"
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):  # raw.g1[0]: offsets 0..9 written 60 s .. 51 s ago
        producer.produce(raw1, value=b"f", partition=0, timestamp=now_ms - 60_000 + i * 1000)
    for _ in range(4):
        producer.produce(raw1, value=b"f", partition=1)
    for i in range(3):  # raw.g2[0]: offsets 0..2 written 30 s .. 28 s ago
        producer.produce(raw2, value=b"f", partition=0, timestamp=now_ms - 30_000 + i * 1000)
    for i in range(5):  # events[1]: offsets 0..4 written 20 s .. 16 s ago
        producer.produce(events, value=b"e", partition=1, timestamp=now_ms - 20_000 + i * 1000)
    assert producer.flush(30) == 0

    # dedup's group has no member now (all workers stopped, or on other hosts) and committed raw.g1[0] up to 6 and
    # all of raw.g1[1]; nothing for raw.g2
    stopped = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": dedup_group, "enable.auto.commit": False})
    stopped.commit(offsets=[TopicPartition(raw1, 0, 6), TopicPartition(raw1, 1, 4)], asynchronous=False)
    stopped.close()
    # the sink's group has a live member holding every partition; it committed events[1] up to 2
    member = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": sink_group,
            "client.id": "sink-host-b",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
        }
    )
    try:
        member.subscribe([events, markets])
        deadline = time.monotonic() + 60
        while len(member.assignment()) < 4 and time.monotonic() < deadline:
            member.poll(0.2)
        assert len(member.assignment()) == 4
        member.commit(offsets=[TopicPartition(events, 1, 2)], asynchronous=False)
        for name, value in {
            "MDPIPE_RUN_DIR": str(tmp_path),  # no local .run/stages
            "MDPIPE_CONFIG": "/dev/null",
            "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "MDPIPE_KAFKA__TOPIC_PREFIX": prefix,
            "MDPIPE_KAFKA__PARTITIONS": "2",
            "MDPIPE_GATHER__IDS": '["g1", "g2"]',
            "MDPIPE_DEDUP__APP_ID": dedup_group,
            "MDPIPE_SINK__GROUP_ID": sink_group,
        }.items():
            monkeypatch.setenv(name, value)
        assert main(["status", "--json", "--no-topics"]) == 0
        checked_at_ms = int(time.time() * 1000)
    finally:
        member.close()
    data = json.loads(capsys.readouterr().out)
    groups = {g["role"]: g for g in data["groups"]}

    dedup = groups["dedup"]
    assert (dedup["group"], dedup["members"]) == (dedup_group, 0)
    rows = {(p["topic"], p["partition"]): p for p in dedup["partitions"]}
    assert set(rows) == {(raw1, 0), (raw1, 1), (raw2, 0), (raw2, 1)}
    lag = {key: (row["committed"], row["high"], row["lag_records"]) for key, row in rows.items()}
    assert lag == {(raw1, 0): (6, 10, 4), (raw1, 1): (4, 4, 0), (raw2, 0): (None, 3, 3), (raw2, 1): (None, 0, 0)}
    elapsed_s = (checked_at_ms - now_ms) / 1000
    # seconds: the age of the first unprocessed record (raw.g1[0] offset 6: 54 s old; raw.g2[0] offset 0: 30 s)
    assert 54 <= rows[(raw1, 0)]["lag_s"] <= 54 + elapsed_s + 1
    assert 30 <= rows[(raw2, 0)]["lag_s"] <= 30 + elapsed_s + 1
    assert rows[(raw1, 1)]["lag_s"] == 0.0 and rows[(raw2, 1)]["lag_s"] == 0.0
    assert dedup["lag_records"] == 7 and dedup["lag_s"] == rows[(raw1, 0)]["lag_s"]

    sink = groups["sink"]
    assert (sink["group"], sink["state"], sink["members"]) == (sink_group, "Stable", 1)
    rows = {(p["topic"], p["partition"]): p for p in sink["partitions"]}
    assert set(rows) == {(events, 0), (events, 1), (markets, 0), (markets, 1)}
    assert (rows[(events, 1)]["committed"], rows[(events, 1)]["lag_records"]) == (2, 3)
    assert 18 <= rows[(events, 1)]["lag_s"] <= 18 + elapsed_s + 1  # offset 2 was written 18 s ago
    assert all(row["owner"].startswith("sink-host-b@") for row in rows.values())


def test_status_says_when_the_broker_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from mdpipe.cli import main

    with socket.socket() as s:  # a closed port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("MDPIPE_CONFIG", "/dev/null")
    monkeypatch.setenv("MDPIPE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    started = time.monotonic()
    assert main(["status", "--json", "--no-topics"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert "groups" not in data and data["groups_error"]
    assert time.monotonic() - started < 30
