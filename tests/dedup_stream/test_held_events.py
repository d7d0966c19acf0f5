"""The native worker's loop reads on when a batch's changelog acknowledgement is slow to come (it waits only
``_ACK_WAIT_S`` for it), and still holds every event until its batch's changelog is acknowledged (no broker: a
scripted consumer and an output whose acknowledgements are slow).

Why it matters: at start-up three gatherers subscribe every market and the venue answers each subscription with a
snapshot; the broker then acknowledges slowly (up to seconds). A worker that waited for each batch's acknowledgement
before reading on read nothing meanwhile, so every frame that arrived waited for that acknowledgement and then for its
own: the start-up backlog of the demo.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import KafkaError, TopicPartition

import dedup_stream.native as native
from dedup_stream.settings import DedupSettings
from dedup_stream.synth import gatherer_copies, venue_events
from mdpipe.config import DedupConfig
from schemas import decode_event, encode_raw

ACK_DELAY_S = 0.4  # the broker acknowledges each changelog record this long after it was queued
RAW_TOPICS = ["t.raw.g1", "t.raw.g2"]
BATCHES = 3
PER_BATCH = 40


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"m"

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


class SlowAckOutput:
    """:class:`dedup_stream.native_output.NativeOutput`'s interface; a changelog record is acknowledged
    ``delay_s`` after it was queued (seen at the next poll), an event ``events_delay_s`` after it was produced; events
    are recorded with the time they left."""

    delay_s = ACK_DELAY_S
    events_delay_s = 0.0

    def __init__(self, producer_conf: dict[str, Any], changelog_topic: str) -> None:
        self.first_error: str | None = None
        self.failures = 0
        self.delivered: dict[int, int] = {}
        self.queued: dict[int, int] = {}
        self.acked: dict[int, int] = {}
        self.pending: list[tuple[float, int]] = []  # (queued at, partition) not acknowledged yet
        self.acked_total = 0
        self.produced: list[tuple[float, str, int]] = []  # (when, event key, changelog records acked by then)
        self.changelog = self._Producer(self)
        self.main = self._Main(self)

    class _Producer:
        def __init__(self, out: SlowAckOutput) -> None:
            self.out = out

        def poll(self, timeout: float = 0.0) -> int:
            time.sleep(min(timeout, 0.005))
            return self.out.serve()

        def flush(self, timeout: float = 0.0) -> int:
            while self.out.pending:
                time.sleep(0.005)
                self.out.serve()
            return 0

    class _Main:
        def __init__(self, out: SlowAckOutput) -> None:
            self.out = out

        def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int = -1) -> None:
            self.out.produced.append((time.monotonic(), decode_event(value).event_key, self.out.acked_total))

        def poll(self, timeout: float = 0.0) -> int:
            return 0

        def __len__(self) -> int:  # events produced and not acknowledged yet
            return len(self.out.produced) - self.out.events_acked()

        def flush(self, timeout: float = 0.0) -> int:
            while len(self):
                time.sleep(0.005)
            return 0

    def serve(self) -> int:
        now, served = time.monotonic(), 0
        while self.pending and self.pending[0][0] + self.delay_s <= now:
            _, partition = self.pending.pop(0)
            self.acked[partition] = self.acked.get(partition, 0) + 1
            self.delivered[partition] = self.acked[partition] - 1
            self.acked_total += 1
            served += 1
        return served

    def put_changelog(self, partition: int, records: list[tuple[bytes, bytes]]) -> None:
        self.pending.append((time.monotonic(), partition))
        self.queued[partition] = self.queued.get(partition, 0) + 1

    def events_acked(self) -> int:
        """Events acknowledged by now (in the order they were produced)."""
        now = time.monotonic()
        return sum(1 for when, _, _ in self.produced if when + self.events_delay_s <= now)

    def events_unacked(self) -> int:
        return len(self.main)

    def changelog_mark(self) -> dict[int, int]:
        return dict(self.queued)

    def changelog_acked(self, mark: dict[int, int]) -> bool:
        return all(self.acked.get(p, 0) >= n for p, n in mark.items())

    def produce(self, topic: str, key: bytes | None, value: bytes, partition: int = -1) -> None:
        self.main.produce(topic, value, key, partition)

    def poll(self) -> None:
        self.serve()

    def flush(self, timeout_s: float) -> str | None:
        self.changelog.flush(timeout_s)
        self.main.flush(timeout_s)
        return self.first_error


class ScriptedConsumer:
    """Hands out ``batches`` one per poll (the first frame from poll(), the rest from consume()), each as soon as it
    is asked for; stops the worker once every batch was handed out and ``expected`` events left."""

    def __init__(self, worker: native.NativeWorker, batches: list[list[FakeMessage]], expected: int) -> None:
        self.worker, self.batches, self.expected = worker, batches, expected
        self.handed: list[tuple[float, int]] = []  # (when, changelog records queued by then) per batch handed out
        self.rest: list[FakeMessage] = []
        self.commits: list[list[TopicPartition]] = []
        self.acked_at_commit: list[int] = []  # events acknowledged when each commit was made

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        on_assign(self, [TopicPartition(t, 0) for t in topics])

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions  # nothing committed: the assignment's expired-records check looks no further

    def poll(self, timeout: float) -> FakeMessage | None:
        out = self.worker.output
        assert isinstance(out, SlowAckOutput)
        if self.batches:
            batch = self.batches.pop(0)
            self.handed.append((time.monotonic(), sum(out.queued.values())))
            self.rest = batch[1:]
            return batch[0]
        if len(out.produced) >= self.expected:
            self.worker._stopping = True
        time.sleep(timeout)
        return None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        rest, self.rest = self.rest[:num_messages], self.rest[num_messages:]
        return rest

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        out = self.worker.output
        assert isinstance(out, SlowAckOutput)
        self.commits.append(offsets)
        self.acked_at_commit.append(out.events_acked())

    def close(self) -> None:
        pass


class NoRestore:
    def __init__(self, *args: Any) -> None:
        pass

    def restore_all(self, states: Any, partitions: list[int]) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> native.NativeWorker:
    monkeypatch.setattr(native, "NativeOutput", SlowAckOutput)
    monkeypatch.setattr(native, "ChangelogRestorer", NoRestore)
    monkeypatch.setattr(native, "ensure_changelog", lambda *args: None)
    monkeypatch.setattr(native, "register", lambda collector: collector)
    settings = DedupSettings(
        config=DedupConfig(app_id="t-app", commit_interval_s=60.0),
        bootstrap_servers="127.0.0.1:1",  # never contacted: the consumer and the output are fakes
        raw_topics=RAW_TOPICS,
        partitions=1,
        workdir=tmp_path / "dedup",
        events_topic="t.events",
        dlq_topic="t.dlq",
        replication_factor=1,
    )
    settings.workdir.mkdir(parents=True)
    return native.NativeWorker(settings)


def run_batches(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch, batches: int = BATCHES
) -> tuple[list[Any], ScriptedConsumer]:
    frames = gatherer_copies(venue_events(batches * PER_BATCH, markets=5, seed=3), "g1")
    messages = [FakeMessage(RAW_TOPICS[0], 0, i, encode_raw(f)) for i, f in enumerate(frames)]
    consumer = ScriptedConsumer(
        worker, [messages[i * PER_BATCH : (i + 1) * PER_BATCH] for i in range(batches)], len(frames)
    )
    monkeypatch.setattr(native, "Consumer", lambda conf: consumer)
    assert worker.run() == 0
    return frames, consumer


def test_a_prompt_acknowledgement_is_waited_for(worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steady state: the broker acknowledges within the short wait, so a small batch's events leave before the
    next batch is read (no extra wake-up to release them)."""
    monkeypatch.setattr(SlowAckOutput, "delay_s", native._ACK_WAIT_S / 5)
    frames, consumer = run_batches(worker, monkeypatch)
    out = worker.output
    assert isinstance(out, SlowAckOutput)
    assert [key for _, key, _ in out.produced] == [f.event_key for f in frames]
    for b, (handed_at, _) in enumerate(consumer.handed[1:], start=1):
        left_before = sum(1 for when, _, _ in out.produced if when < handed_at)
        assert left_before == b * PER_BATCH, (b, left_before)


def test_reads_on_while_a_changelog_is_in_flight_and_holds_events_until_it_is_acked(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = gatherer_copies(venue_events(BATCHES * PER_BATCH, markets=5, seed=3), "g1")
    messages = [FakeMessage(RAW_TOPICS[0], 0, i, encode_raw(f)) for i, f in enumerate(frames)]
    batches = [messages[i * PER_BATCH : (i + 1) * PER_BATCH] for i in range(BATCHES)]
    consumer = ScriptedConsumer(worker, batches, expected=len(messages))
    monkeypatch.setattr(native, "Consumer", lambda conf: consumer)

    started = time.monotonic()
    assert worker.run() == 0
    took = time.monotonic() - started
    out = worker.output
    assert isinstance(out, SlowAckOutput)

    # every event once, in the order of its frames
    assert [key for _, key, _ in out.produced] == [f.event_key for f in frames]
    # none left before its batch's changelog record was acknowledged (one record per batch: one partition)
    for i, (_, key, acked) in enumerate(out.produced):
        assert acked >= i // PER_BATCH + 1, (key, acked)
    # the batches were read back to back, not one acknowledgement apart: each was handed out before the changelog of
    # the one before it was acknowledged ...
    for (when, queued), (previous, _) in zip(consumer.handed[1:], consumer.handed, strict=False):
        assert queued >= 1 and when - previous < ACK_DELAY_S / 2, consumer.handed
    # ... so the acknowledgements overlapped: the whole run takes about one acknowledgement, not one per batch
    assert took < ACK_DELAY_S * (BATCHES - 0.5), took
    assert consumer.commits  # the stop commits the frames processed


def test_interval_commits_do_not_stop_the_reading_and_name_only_acknowledged_output(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit after every batch, on a broker that acknowledges changelog records and events slowly (a freshly
    started one): the worker reads the batches back to back instead of waiting at each commit for both
    acknowledgements (the start-up backlog of bench-failover), and still commits no frame whose event is not
    acknowledged."""
    monkeypatch.setattr(SlowAckOutput, "events_delay_s", ACK_DELAY_S)
    worker.settings = dataclasses.replace(
        worker.settings, config=msgspec.structs.replace(worker.settings.config, commit_interval_s=1e-6)
    )
    frames, consumer = run_batches(worker, monkeypatch, batches=5)
    out = worker.output
    assert isinstance(out, SlowAckOutput)

    assert [key for _, key, _ in out.produced] == [f.event_key for f in frames]  # every event once, in order
    for (when, _), (previous, _) in zip(consumer.handed[1:], consumer.handed, strict=False):
        assert when - previous < ACK_DELAY_S / 2, consumer.handed  # no batch waited for a commit's acknowledgements
    assert len(consumer.commits) >= 2  # interval commits were made, not only the one at the stop
    for offsets, acked in zip(consumer.commits, consumer.acked_at_commit, strict=True):
        (tp,) = offsets
        # one event per frame here (a single gatherer): frame i's event is event i
        assert tp.offset <= acked, (tp.offset, acked, consumer.commits)
    assert consumer.commits[-1][0].offset == len(frames)  # in the end every frame is committed


class FailingCommits(ScriptedConsumer):
    """Reports every asynchronous (interval) commit as failed with ``code``, as librdkafka's commit callback would."""

    code = KafkaError.GROUP_AUTHORIZATION_FAILED

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        super().commit(offsets, asynchronous)
        if asynchronous:
            self.worker._on_commit(KafkaError(self.code), offsets)


def _run_failing(worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch, code: int) -> FailingCommits:
    frames = gatherer_copies(venue_events(5 * PER_BATCH, markets=5, seed=3), "g1")
    messages = [FakeMessage(RAW_TOPICS[0], 0, i, encode_raw(f)) for i, f in enumerate(frames)]
    consumer = FailingCommits(worker, [messages[i * PER_BATCH : (i + 1) * PER_BATCH] for i in range(5)], len(frames))
    consumer.code = code
    monkeypatch.setattr(native, "Consumer", lambda conf: consumer)
    worker.settings = dataclasses.replace(
        worker.settings, config=msgspec.structs.replace(worker.settings.config, commit_interval_s=1e-6)
    )
    worker.run()
    return consumer


def test_an_interval_commit_refused_for_good_stops_the_worker(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit error that no retry cures (here: not authorised) stops the worker, as a synchronous commit's does,
    instead of a worker that runs on, looks healthy and never commits."""

    class Exited(Exception):
        pass

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(native.os, "_exit", exit_)  # the worker exits the process on a failure
    with pytest.raises(Exited) as exited:
        _run_failing(worker, monkeypatch, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert exited.value.args == (native.EXIT_OUTPUT_FAILED,)


def test_an_interval_commit_that_timed_out_is_carried_by_the_next(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = _run_failing(worker, monkeypatch, KafkaError.REQUEST_TIMED_OUT)
    assert len(consumer.commits) >= 2
    assert consumer.commits[-1][0].offset == 5 * PER_BATCH  # the final (synchronous) commit names every frame


def test_a_failed_changelog_record_stops_an_idle_worker_at_once(
    worker: native.NativeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held batch whose changelog record failed can never go out: the worker exits (and its restart re-decides)
    without waiting for more frames, which on a quiet venue may not come for a long time."""

    class Exited(Exception):
        pass

    def exit_(code: int) -> None:
        raise Exited(code)

    def failing_serve(out: SlowAckOutput) -> int:
        # the broker answers the changelog record with a failure (never acknowledged), after the batch's short wait
        if out.pending and time.monotonic() - out.pending[0][0] > 3 * native._ACK_WAIT_S:
            out.pending.clear()
            out.first_error, out.failures = "t-app-seen-changelog[0]: refused", 1
        return 0

    monkeypatch.setattr(native.os, "_exit", exit_)
    monkeypatch.setattr(SlowAckOutput, "serve", failing_serve)
    frames = gatherer_copies(venue_events(PER_BATCH, markets=5, seed=3), "g1")
    messages = [FakeMessage(RAW_TOPICS[0], 0, i, encode_raw(f)) for i, f in enumerate(frames)]
    consumer = ScriptedConsumer(worker, [messages], expected=10**9)  # then idle: no frame comes any more
    real_poll = consumer.poll
    started = time.monotonic()

    def poll(timeout: float) -> FakeMessage | None:
        if time.monotonic() - started > 5.0:
            worker._stopping = True  # the shutdown path exits too: only the time tells the idle path's exit
        return real_poll(timeout)

    consumer.poll = poll  # type: ignore[method-assign]
    monkeypatch.setattr(native, "Consumer", lambda conf: consumer)
    with pytest.raises(Exited) as exited:
        worker.run()
    assert exited.value.args == (native.EXIT_OUTPUT_FAILED,)
    assert time.monotonic() - started < 2.0, "the idle worker sat on a batch that can never go"
    out = worker.output
    assert isinstance(out, SlowAckOutput) and not out.produced, "no event of the failed batch left"
