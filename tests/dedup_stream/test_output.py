"""Output batching: order per partition, and the producer's flush (run before every commit) sends pending batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from dedup_stream.output import OutputBatcher


class RecordingProducer:
    """Stands in for AIOKafkaProducer's batch API; records what was submitted, in order."""

    def __init__(self, batch_size: int, fail: BaseException | None = None) -> None:
        self.batch_size = batch_size
        self.fail = fail
        self.sent: list[tuple[str, int, int]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.record_count()))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail is None:
            future.set_result(None)
        else:
            future.set_exception(self.fail)
        return future


class FaustProducer:
    def __init__(self) -> None:
        self.flushed = 0

    async def flush(self) -> None:
        self.flushed += 1


def test_batches_are_sent_when_full_and_on_commit_flush() -> None:
    async def scenario() -> None:
        producer = RecordingProducer(batch_size=2048)
        out = OutputBatcher("events", lambda: producer)
        faust_producer = FaustProducer()
        out.hook(faust_producer)
        for i in range(100):
            await out.add(i % 2, b"M", b"x" * 100)
        assert producer.sent and out.pending > 0  # full batches already went out
        await faust_producer.flush()  # what Faust calls before committing offsets
        assert out.pending == 0 and faust_producer.flushed == 1
        assert sum(n for _, _, n in producer.sent) == 100 == out.sent
        assert {p for _, p, _ in producer.sent} == {0, 1}

    asyncio.run(scenario())


def test_a_failed_batch_stops_the_worker_before_offsets_are_committed(monkeypatch: Any) -> None:
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr("dedup_stream.output.os._exit", fake_exit)

    async def scenario() -> None:
        from aiokafka.errors import MessageSizeTooLargeError

        producer = RecordingProducer(batch_size=2048, fail=MessageSizeTooLargeError())
        out = OutputBatcher("events", lambda: producer)
        faust_producer = FaustProducer()
        out.hook(faust_producer)
        await out.add(0, b"M", b"x")
        with pytest.raises(SystemExit):
            await faust_producer.flush()  # Faust would commit right after this returns
        assert faust_producer.flushed == 1

    asyncio.run(scenario())
    assert exits == [75]


class PendingProducer(RecordingProducer):
    """Its batches stay unacknowledged until the test resolves them (``futures``)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.futures: list[asyncio.Future[Any]] = []

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.record_count()))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def test_events_wait_for_the_changelog_acknowledgement() -> None:
    """Faust engine: an event batch reaches the producer only after every changelog batch sent before it is
    acknowledged (state before events, as in the native engine)."""

    async def scenario() -> None:
        producer = PendingProducer(batch_size=2048)
        changelog = OutputBatcher("seen-changelog", lambda: producer)
        events = OutputBatcher("events", lambda: producer, after=changelog)
        changelog.append(0, b"k", b"winner")
        events.append(0, b"M", b"event")
        flushing = asyncio.ensure_future(events.flush())
        await asyncio.sleep(0.05)
        assert [t for t, _, _ in producer.sent] == ["seen-changelog"]  # the event waits
        assert not flushing.done()
        producer.futures[0].set_result(None)  # the broker acknowledges the changelog batch
        await asyncio.wait_for(flushing, 1)
        assert [t for t, _, _ in producer.sent] == ["seen-changelog", "events"]

    asyncio.run(scenario())


def test_a_failed_changelog_batch_stops_the_worker_before_its_events_are_sent(monkeypatch: Any) -> None:
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr("dedup_stream.output.os._exit", fake_exit)
    producer = PendingProducer(batch_size=2048)

    async def scenario() -> None:
        from aiokafka.errors import MessageSizeTooLargeError

        changelog = OutputBatcher("seen-changelog", lambda: producer)
        events = OutputBatcher("events", lambda: producer, after=changelog)
        changelog.append(0, b"k", b"winner")
        events.append(0, b"M", b"event")
        flushing = asyncio.ensure_future(events.flush())
        await asyncio.sleep(0.05)
        producer.futures[0].set_exception(MessageSizeTooLargeError())
        await flushing

    with pytest.raises(SystemExit):  # asyncio lets SystemExit out of the loop at once
        asyncio.run(scenario())
    assert exits == [75]
    assert [t for t, _, _ in producer.sent] == ["seen-changelog"]  # the event never reached the producer


class AccumulatorFlush:
    """Faust's producer flush as aiokafka does it: waits for the batches the producer holds when it starts."""

    def __init__(self, producer: PendingProducer) -> None:
        self.producer = producer

    async def flush(self) -> None:
        waiting = [fut for fut in self.producer.futures if not fut.done()]
        if waiting:
            await asyncio.wait(waiting)


def test_a_commit_flush_waits_for_events_another_flush_is_handing_over() -> None:
    """Faust engine: the producer flush that Faust runs before committing offsets returns only once every event
    appended before it is acknowledged, even when another flush (the linger timer's, or the agent's on a full batch)
    has taken those events out of the pending set and is still waiting for their changelog records' acknowledgement.
    Otherwise Faust commits the offsets of frames whose events have not reached the broker: a SIGKILL before they
    do loses them (the restarted worker never re-reads those frames)."""

    async def scenario() -> None:
        producer = PendingProducer(batch_size=2048)
        changelog = OutputBatcher("seen-changelog", lambda: producer)
        events = OutputBatcher("events", lambda: producer, after=changelog)
        faust_producer = AccumulatorFlush(producer)
        events.hook(faust_producer)
        changelog.hook(faust_producer)  # as DedupApp does: the changelog's flush wraps the events'
        changelog.append(1, b"k", b"winner")
        events.append(1, b"M", b"event")
        timer = asyncio.ensure_future(events.flush())  # the linger timer's flush: waits for the changelog ack
        await asyncio.sleep(0.05)
        assert [t for t, _, _ in producer.sent] == ["seen-changelog"] and not timer.done()
        commit_flush = asyncio.ensure_future(faust_producer.flush())  # Faust, about to commit the offsets
        await asyncio.sleep(0.05)
        producer.futures[0].set_result(None)  # the broker acknowledges the changelog batch
        await asyncio.wait_for(timer, 1)
        assert [t for t, _, _ in producer.sent] == ["seen-changelog", "events"]
        await asyncio.sleep(0.05)
        # Faust commits as soon as its flush returns: not before the event is acknowledged
        assert not commit_flush.done(), "offsets would be committed before the event reached the broker"
        producer.futures[1].set_result(None)
        await asyncio.wait_for(commit_flush, 1)

    asyncio.run(scenario())
