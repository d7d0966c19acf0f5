"""The probes a run's progress display asks every second (`make demo`, bench-e2e): right figures, small cost.

Against the real broker and database. What they cost matters because bench-e2e charges the broker's and
PostgreSQL's CPU to the pipeline it measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mdpipe.config import Config
from ops.pipeline_run import PipelineRun, RunOptions
from ops.probe import KafkaProbe


def test_end_offsets_sum_every_partitions_high_watermark(kafka_bootstrap: str, make_topics: Any) -> None:
    from confluent_kafka import Producer

    full, empty = make_topics(2, partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition, count in enumerate((5, 0, 7)):
        for i in range(count):
            producer.produce(full, value=b"x%d" % i, partition=partition)
    assert producer.flush(30) == 0
    probe = KafkaProbe({"bootstrap.servers": kafka_bootstrap})
    try:
        assert probe.end_offsets([full, empty, "t-no-such-topic"]) == {full: 12, empty: 0, "t-no-such-topic": 0}
        producer.produce(full, value=b"one more", partition=1)
        assert producer.flush(30) == 0
        assert probe.end_offsets([full]) == {full: 13}
    finally:
        probe.close()


def test_end_offsets_stop_where_a_read_committed_consumer_must(kafka_bootstrap: str, make_topics: Any) -> None:
    """The sink and the dedup worker read committed records only: a progress figure that counted an open
    transaction's records would show a lag they cannot drain."""
    from confluent_kafka import Producer

    (topic,) = make_topics(1, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"probe-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed", partition=0)
    producer.commit_transaction(30)  # offset 0 and its commit marker (1)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"open %d" % i, partition=0)
    producer.flush(30)
    probe = KafkaProbe({"bootstrap.servers": kafka_bootstrap})

    def settled(expected: int) -> dict[str, int]:
        """The figure once it equals ``expected`` (or after 15 s): a commit's marker is written after the
        coordinator answered the commit."""
        deadline = time.monotonic() + 15
        while (found := probe.end_offsets([topic])) != {topic: expected} and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    try:
        assert settled(2) == {topic: 2}  # the open transaction's 5 records are not counted
        producer.commit_transaction(30)
        assert settled(8) == {topic: 8}
    finally:
        probe.close()


@pytest.fixture
def progress_run(tmp_path: Path, make_database: Callable[..., str]) -> PipelineRun:
    """A run whose sink_offsets table holds two partitions of its events topic and one of another topic."""
    dsn = make_database()
    run = PipelineRun(Config(), RunOptions(workdir=tmp_path / "run"))
    run.dsn = dsn
    from mdpipe.topics import topic_names

    events = topic_names(run._stage_config()).events
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE sink_offsets (group_id text, topic text, partition int, next_offset bigint)")
        rows = [(run.group_id, events, 0, 40), (run.group_id, events, 1, 2), (run.group_id, "markets", 0, 900)]
        for row in rows:
            conn.execute("INSERT INTO sink_offsets VALUES (%s, %s, %s, %s)", row)
    return run


def test_sink_committed_asks_every_tick_on_one_connection(
    progress_run: PipelineRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new connection a tick was a PostgreSQL backend started and ended every second of every run (~9 ms of the
    database's CPU each), counted in bench-e2e's PostgreSQL figure as if the pipeline had spent it."""
    opened: list[Any] = []
    real_connect = psycopg.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(psycopg, "connect", counting_connect)
    try:
        assert [progress_run.sink_committed() for _ in range(5)] == [42] * 5
        assert len(opened) == 1
    finally:
        progress_run.stop()
    assert opened[0].closed  # stop() closes it


def test_sink_committed_reconnects_at_once_when_its_connection_died(progress_run: PipelineRun) -> None:
    try:
        assert progress_run.sink_committed() == 42
        kept = progress_run._progress_db
        assert kept is not None
        with psycopg.connect(progress_run.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (kept.info.backend_pid,))
        assert progress_run.sink_committed() == 42  # the same tick: not a 0 that would read as a backlog
        assert progress_run._progress_db is not kept
        progress_run.dsn = "postgresql://nobody@127.0.0.1:1/none"
        progress_run._close_progress_db()
        assert progress_run.sink_committed() == 0  # unreachable: 0, as before, never an exception
    finally:
        progress_run.stop()


class _Probe:
    """The Kafka figures of a quiet run (every topic empty, nothing committed)."""

    def end_offsets(self, topics: list[str]) -> dict[str, int]:
        return dict.fromkeys(topics, 0)

    def committed(self, group: str, topics: list[str]) -> dict[str, int]:
        return {}


def _samples_scraping(options: RunOptions, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many of three progress samples of a run with ``options`` scraped the stages' /metrics."""
    run = PipelineRun(Config(), options)
    scrapes: list[int] = []
    monkeypatch.setattr(run, "_scrape_stages", lambda: scrapes.append(1) or {"dedup": {}})
    monkeypatch.setattr(run, "_venue_stats", lambda: (0, {}))
    monkeypatch.setattr(run, "sink_committed", lambda: 0)
    run._probe = _Probe()  # type: ignore[assignment]
    last = None
    for _ in range(3):
        last = run.progress(time.monotonic(), last)
    return len(scrapes)


def test_a_run_that_reads_no_stage_figures_does_not_scrape_the_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scrape costs the stage's process a few ms of CPU (prometheus_client formats every sample): bench-e2e,
    which reads none of the figures, counted ~6 such scrapes a second as the pipeline's CPU."""
    from bench.e2e.__main__ import run_options
    from ops.settle import Settle

    workdir = tmp_path / "run"
    assert _samples_scraping(RunOptions(workdir=workdir), monkeypatch) == 3  # the demo's display
    assert _samples_scraping(RunOptions(workdir=workdir, scrape_stages=False), monkeypatch) == 0
    settle = Settle(1.0, 5.0, 120.0)  # the settle watch reads the stages' lags: it scrapes whatever the option says
    settling = RunOptions(workdir=workdir, scrape_stages=False, settle=settle)
    assert _samples_scraping(settling, monkeypatch) == 3
    for verify in (True, False):  # bench-e2e's latency and ramp runs
        options = run_options(10_000.0, 30.0, 20_000, 3, verify, "lat0", "", "bench-e2e")
        assert _samples_scraping(options, monkeypatch) == 0
