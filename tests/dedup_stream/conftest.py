"""Fixtures for dedup tests on the real broker: isolated topic sets, a worker launcher, an events reader."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas import Event, decode_event

PARTITIONS = 3


@dataclass
class DedupTopics:
    """One isolated set of raw.g1..g3/events/dlq topics (names carry a unique prefix)."""

    bootstrap: str
    prefix: str
    partitions: int = PARTITIONS

    def app_id(self, name: str) -> str:
        return f"{self.prefix}app-{name}"

    def raw(self, gatherer: str) -> str:
        return f"{self.prefix}raw.{gatherer}"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def env(self, run_dir: Path) -> dict[str, str]:
        return {
            **os.environ,
            "MDPIPE_RUN_DIR": str(run_dir),
            "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "MDPIPE_KAFKA__TOPIC_PREFIX": self.prefix,
            "MDPIPE_KAFKA__PARTITIONS": str(self.partitions),
            "MDPIPE_GATHER__IDS": '["g1", "g2", "g3"]',
        }

    def read(self, topic: str, timeout_s: float = 10.0) -> list[tuple[int, int, bytes | None, bytes]]:
        """Every record of ``topic`` up to its current end: (partition, offset, key, value)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        try:
            ends = {}
            for p in range(self.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            out: list[tuple[int, int, bytes | None, bytes]] = []
            pos = {p: 0 for p in ends}
            deadline = time.monotonic() + timeout_s
            while any(pos[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                for msg in consumer.consume(10000, timeout=0.5):
                    if msg.error():
                        continue
                    out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
                    pos[msg.partition()] = msg.offset() + 1
            return out
        finally:
            consumer.close()

    def count(self, topic: str, timeout_s: float = 10.0) -> int:
        """Records in ``topic`` so far (sum of its partitions' end offsets; no transactions write here), without
        reading them: cheap enough to poll while a worker runs."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"count-{uuid.uuid4().hex}"})
        try:
            return sum(
                high - low
                for low, high in (
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                    for p in range(self.partitions)
                )
            )
        finally:
            consumer.close()

    def events_read(self) -> list[Event]:
        return [decode_event(value) for _, _, _, value in self.read(self.events)]


@pytest.fixture
def dedup_topics(kafka_bootstrap: str, make_topics: Callable[..., list[str]]) -> Iterator[DedupTopics]:
    """Fresh topics; app ids are prefixed too (``topics.app_id(name)``), so Faust's changelogs, and any other
    topic a test creates under the prefix, are removed with them."""
    topics = DedupTopics(kafka_bootstrap, f"dd{uuid.uuid4().hex[:8]}.")
    make_topics([topics.raw(g) for g in ("g1", "g2", "g3")] + [topics.events, topics.dlq], partitions=PARTITIONS)
    yield topics
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    changelogs = [t for t in admin.list_topics(timeout=10).topics if t.startswith(topics.prefix)]
    if changelogs:
        for fut in admin.delete_topics(changelogs, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    stage_file: Path
    engine: str = "native"

    def healthy(self) -> bool:
        import urllib.error
        import urllib.request

        url = json.loads(self.stage_file.read_text())["health_url"]
        try:
            return urllib.request.urlopen(url, timeout=5).status == 200
        except urllib.error.HTTPError:
            return False

    def metric(self, name: str) -> float:
        """Sum over every label set of metric ``name`` (scraped from the worker's /metrics)."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metric_lines(name))

    def metric_lines(self, *names: str) -> list[str]:
        """The /metrics lines of the metrics ``names`` (every label set), as the worker serves them."""
        import urllib.request

        url = json.loads(self.stage_file.read_text())["metrics_url"]
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        prefixes = tuple(p for n in names for p in (n + "{", n + " "))
        return [line for line in text.splitlines() if line.startswith(prefixes)]

    def stacks(self, wait_s: float = 3.0) -> str:
        """Where a running Faust worker stands: its worker (mode.Worker) writes every thread's stack and every
        asyncio task to its log on SIGUSR1; returns what the log gained ("" for the native engine or a stopped
        worker)."""
        if self.engine != "faust" or self.proc.poll() is not None:
            return ""
        size = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait_s)
        with self.log_path.open("rb") as log:
            log.seek(size)
            return log.read().decode(errors="replace")

    def frames_in(self) -> float:
        """Frames this worker has read so far."""
        return self.metric("mdpipe_dedup_frames_in_total")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def summary(self) -> dict[str, object]:
        for line in reversed(self.log().splitlines()):
            if "event=dedup_stop" in line:
                raw = line.split("summary=", 1)[1]
                return dict(json.loads(json.loads(raw) if raw.startswith('"') else raw))
        raise AssertionError(f"no dedup_stop line in the worker log:\n{self.log()[-3000:]}")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not stop in {timeout_s}s:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(60)


@dataclass
class WorkerLauncher:
    tmp: Path
    engine: str = "native"
    workers: list[Worker] = field(default_factory=list)

    def start(
        self, topics: DedupTopics, app_id: str, name: str, *extra: str, entry: Sequence[str] = ("-m", "mdpipe")
    ) -> Worker:
        """Start ``mdpipe dedup`` (``entry``: what runs ``mdpipe``'s CLI, e.g. a script wrapping it with a fault)."""
        workdir = self.tmp / name
        log_path = self.tmp / f"{name}-{len(self.workers)}.log"
        cmd = [sys.executable, *entry, "dedup", "--app-id", topics.app_id(app_id), "--workdir", str(workdir)]
        cmd += ["--engine", self.engine, "--metrics-port", "0", "--session-timeout-s", "6", *extra]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=topics.env(self.tmp / "run"))
        worker = Worker(proc, log_path, workdir, self.tmp / "run" / "stages" / f"dedup-{name}.json", self.engine)
        self.workers.append(worker)
        return worker


@pytest.fixture(params=["native", "faust"])
def dedup_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkerLauncher]:
    """Launches `mdpipe dedup` workers of one engine; every test using it runs once per engine."""
    launcher = WorkerLauncher(tmp_path, engine=request.param)
    yield launcher
    for worker in launcher.workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)
