"""Batched output of the dedup worker: records appended to per-partition aiokafka batches instead of one
awaited ``topic.send`` per record (which costs a future, a task and several loop turns each). Used for the
``events`` topic and for the state table's changelog.

Durability rule: Faust commits input offsets only after ``producer.flush()``. :meth:`OutputBatcher.hook`
wraps that flush so pending batches are handed to the producer first; a record whose input offset is
committed has therefore always reached the producer (and been acknowledged by the broker) before.

State before events: the events batcher is built with ``after=`` the changelog batcher. Before it hands any batch
to the producer it sends every pending changelog batch and waits until every changelog batch sent so far is
acknowledged (:meth:`OutputBatcher.confirm`); a failed one stops the worker. A record is appended to the changelog
before its event is appended to the events batcher (same synchronous step of the agent), so an event that reaches
the broker always has its winner in the changelog: whoever restores the partition next replays the same copy.
A batch leaves the pending set only under the lock, so a commit's flush (which takes the lock) never
misses a batch that another flush is still handing over; a flush that finds nothing pending still waits for the lock
while another flush holds it (that flush took its batches out of the pending set and may be waiting for the changelog
acknowledgement: returning at once let Faust commit offsets past events not yet handed to the producer, which a
SIGKILL then lost with every copy). A timer calls :meth:`flush` every linger period so that output latency stays
bounded when input is slow.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from mdpipe.logging import get_logger

__all__ = ["EXIT_OUTPUT_FAILED", "OutputBatcher"]

log = get_logger(__name__)

EXIT_OUTPUT_FAILED = 75  # EX_TEMPFAIL: restart the worker; nothing was committed past the failed batch


class OutputBatcher:
    """Per-partition record batches for one topic, sent in order through an aiokafka producer.

    ``on_delivered(partition, last_offset)`` is called when the broker acknowledged a batch.
    """

    def __init__(
        self,
        topic: str,
        producer: Callable[[], Any],
        on_delivered: Callable[[int, int], None] | None = None,
        after: OutputBatcher | None = None,
    ) -> None:
        self.topic = topic
        self._after = after  # its records must be acknowledged before any of ours is sent
        self._producer = producer  # returns the started AIOKafkaProducer (Faust creates it at start-up)
        self._on_delivered = on_delivered
        self._batches: dict[int, Any] = {}
        self._full: list[tuple[int, Any]] = []  # full batches waiting for the next flush, in order
        self._lock = asyncio.Lock()
        self.pending = 0  # records appended but not yet handed to the producer
        self.sent = 0
        self._unconfirmed: list[asyncio.Future[Any]] = []  # sent batches whose outcome was not checked yet

    def append(self, partition: int, key: bytes | None, value: bytes) -> None:
        """Add a record without waiting (call :meth:`flush` when :attr:`has_full` is true)."""
        batch = self._batches.get(partition)
        if batch is None:
            batch = self._batches[partition] = self._producer().create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            self._full.append((partition, batch))
            batch = self._batches[partition] = self._producer().create_batch()
            batch.append(key=key, value=value, timestamp=None)
        self.pending += 1

    @property
    def has_full(self) -> bool:
        return bool(self._full)

    async def add(self, partition: int, key: bytes | None, value: bytes) -> None:
        self.append(partition, key, value)
        if self._full:
            await self.flush()

    async def flush(self) -> None:
        """Hand every pending batch to the producer (does not wait for the broker's acknowledgement); returns only
        once any flush already under way has handed over its batches too."""
        if not self._batches and not self._full and not self._lock.locked():
            return  # nothing pending, and no other flush holds batches taken out of the pending set
        async with self._lock:
            full, self._full = self._full, []
            batches, self._batches = self._batches, {}
            if self._after is not None:
                await self._after.confirm()
            for partition, batch in full:
                await self._send(partition, batch)
            for partition, batch in batches.items():
                await self._send(partition, batch)

    async def _send(self, partition: int, batch: Any) -> None:
        count = batch.record_count()
        if not count:
            return
        future = await self._producer().send_batch(batch, self.topic, partition=partition)
        self.pending -= count
        self.sent += count
        self._unconfirmed.append(future)
        if self._on_delivered is not None:
            callback = self._on_delivered

            def delivered(fut: asyncio.Future[Any], partition: int = partition, count: int = count) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    callback(partition, fut.result().offset + count - 1)

            future.add_done_callback(delivered)

    async def confirm(self) -> None:
        """Send every pending batch and wait until every batch sent so far is acknowledged; on a failure, stop the
        process at once (nothing that depends on these records has been sent, nothing is committed)."""
        await self.flush()
        waiting = [fut for fut in self._unconfirmed if not fut.done()]
        if waiting:
            await asyncio.wait(waiting)
        error = self.failure()
        if error is not None:
            log.critical("output_batch_failed_exiting", topic=self.topic, error=repr(error))
            os._exit(EXIT_OUTPUT_FAILED)

    def failure(self) -> BaseException | None:
        """The first error of a sent batch that has completed, if any (forgets the successful ones)."""
        still: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        for fut in self._unconfirmed:
            if not fut.done():
                still.append(fut)
            elif error is None and not fut.cancelled() and fut.exception() is not None:
                error = fut.exception()
        self._unconfirmed = still
        return error

    def hook(self, faust_producer: Any) -> None:
        """Make ``faust_producer.flush()`` (called before every offset commit) flush these batches first.

        aiokafka's flush waits for the batches to *finish*, not to succeed: a batch that failed (too large, not
        authorised, expired while a leader was away) must not let Faust commit the input offsets behind it, or
        its events would be lost silently. The worker then stops at once, without committing; on restart it
        re-reads the frames and, finding their own origin in the state, emits them again.
        """
        original: Callable[[], Awaitable[None]] = faust_producer.flush

        async def flush() -> None:
            await self.flush()
            await original()
            error = self.failure()
            if error is not None:
                log.critical("output_batch_failed_exiting", topic=self.topic, error=repr(error))
                os._exit(EXIT_OUTPUT_FAILED)

        faust_producer.flush = flush
