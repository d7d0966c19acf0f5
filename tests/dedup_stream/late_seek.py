"""Run ``mdpipe`` (argv as for ``python -m mdpipe``) with a Faust consumer whose seek to the committed offsets answers
late: a fault injection for the Faust engine's tests, as a loaded machine or a slow group coordinator produces it.

When the seek is made while the raw (stream) partitions are already being fetched, it returns only once records of
them wait in the stream queues, not yet taken by the agent (at most ``HOLD_S``), and the agent is slow while it is
held (``SLOW_S`` per frame): the state a loaded worker reaches by chance. A seek made while no stream partition is
fetched returns at once. Whatever Faust does to the queued records right after the seek (an end of recovery that
clears the queues drops them) then happens every time instead of now and then.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from faust.transport.consumer import Consumer

from dedup_stream.app import DedupApp

HOLD_S = 10.0  # the longest a seek is held
QUEUED = 8  # stream records waiting in the queues before the seek returns
SLOW_S = 0.01  # the agent's extra time per frame while a seek is held

_original_seek = Consumer.perform_seek
_original_process = DedupApp._process
_holding = False


def streaming(consumer: Any) -> bool:
    """Whether the consumer fetches any stream (non-changelog) partition right now."""
    return any(not consumer._is_changelog_tp(tp) for tp in consumer._get_active_partitions())


def queued(consumer: Any) -> int:
    """Records waiting in the stream queues of every topic channel (not yet taken by an agent)."""
    channels = list(consumer.app.topics._topics)
    return sum(chan._queue.qsize() for chan in channels if chan._queue is not None)


async def late_seek(self: Any) -> None:
    global _holding
    await _original_seek(self)
    deadline = time.monotonic() + HOLD_S
    _holding = True
    try:
        while streaming(self) and queued(self) < QUEUED and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
    finally:
        _holding = False


async def slow_process(self: Any, msg: Any) -> None:
    if _holding:
        await asyncio.sleep(SLOW_S)
    await _original_process(self, msg)


Consumer.perform_seek = late_seek  # type: ignore[method-assign]
DedupApp._process = slow_process  # type: ignore[method-assign]

if __name__ == "__main__":
    from mdpipe.cli import main

    sys.exit(main(sys.argv[1:]))
