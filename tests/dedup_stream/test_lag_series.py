"""A native dedup worker (`mdpipe dedup` subprocess, real broker) exports its consumer lag per raw partition it
owns, and only those: partitions a rebalance gives to another member leave no series behind."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dedup_stream.synth import gatherer_copies, produce_frames, venue_events

pytestmark = pytest.mark.integration


def _lag(worker: Any) -> tuple[dict[tuple[str, int], float], float] | None:
    """(records per (topic, partition), seconds) scraped from the worker; None before it answers."""
    try:
        url = json.loads(worker.stage_file.read_text())["metrics_url"]
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except (OSError, ValueError):
        return None
    records: dict[tuple[str, int], float] = {}
    seconds = -1.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mdpipe_dedup_consumer_lag_records":
                records[(s.labels["topic"], int(s.labels["partition"]))] = s.value
            elif s.name == "mdpipe_dedup_consumer_lag_seconds":
                seconds = s.value
    return records, seconds


def test_native_worker_exports_the_lag_of_the_partitions_it_owns_only(dedup_topics: Any, tmp_path: Path) -> None:
    from confluent_kafka import Consumer

    from tests.dedup_stream.conftest import WorkerLauncher

    topics = dedup_topics
    raw = [topics.raw(g) for g in ("g1", "g2", "g3")]
    frames = gatherer_copies(venue_events(600, markets=30, seed=5), "g1")
    produce_frames({"bootstrap.servers": topics.bootstrap}, raw[0], frames)
    launcher = WorkerLauncher(tmp_path, engine="native")
    worker = launcher.start(topics, "lag", "w1")
    other = Consumer(
        {
            "bootstrap.servers": topics.bootstrap,
            "group.id": topics.app_id("lag"),
            "enable.auto.commit": False,
            "partition.assignment.strategy": "range",
        }
    )
    try:
        every = {(t, p) for t in raw for p in range(topics.partitions)}
        deadline = time.monotonic() + 90
        while True:  # the worker owns every partition, has read and committed every frame: lag 0 everywhere
            got = _lag(worker)
            if got is not None and set(got[0]) == every and not any(got[0].values()) and got[1] == 0.0:
                break
            assert worker.proc.poll() is None, worker.log()[-3000:]
            assert time.monotonic() < deadline, f"lag series {got} (want 0 for {sorted(every)})"
            time.sleep(0.3)
        assert worker.frames_in() == len(frames)

        other.subscribe(raw)  # a second member of the group: the range assignor moves partitions to it
        while not other.assignment():
            assert time.monotonic() < deadline, "the second member got no partitions"
            other.poll(0.1)
        taken = {tp.partition for tp in other.assignment()}
        owned = {(t, p) for t in raw for p in range(topics.partitions) if p not in taken}
        assert taken and owned
        while True:
            got = _lag(worker)
            if got is not None and set(got[0]) == owned:
                break
            assert time.monotonic() < deadline, f"worker exports {got and sorted(got[0])}, owns {sorted(owned)}"
            other.poll(0.1)
        settle = time.monotonic() + 3  # and it stays that way (statistics arrive every second)
        while time.monotonic() < settle:
            other.poll(0.1)
        got = _lag(worker)
        assert got is not None and set(got[0]) == owned
    finally:
        other.close()
        worker.stop()
