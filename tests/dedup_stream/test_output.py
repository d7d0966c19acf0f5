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
