"""Output batching: order per partition, and the producer's flush (run before every commit) sends pending batches."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

from dedup_stream.output import OutputBatcher


class RecordingProducer:
    """Stands in for AIOKafkaProducer's batch API; records what was submitted, in order."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, int]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.record_count()))


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
