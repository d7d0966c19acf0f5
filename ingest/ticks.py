"""One wake-up grid for the gatherer's periodic tasks (service loop, watchdog, broker watch, supervisor, refresh).

Each periodic task sleeps its own pause between steps. On the gatherer's 2-core box a timer wake-up of the event loop
(epoll returning, the loop's bookkeeping, the thread scheduled back in) costs more than most of these steps' work, and
pauses counted from the end of each step never line up: five tasks at 0.1-1 s woke the loop ~23 times a second
between the socket reads. So a pause is rounded to the nearest tick of one grid of loop time (``TICK_S``): steps due
on the same tick are timers with the same due time, run in the same loop iteration, one wake-up for all of them.
A pause moves by at most half a tick; a pause shorter than a tick (the spool's drain pace) is not rounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["TICK_S", "sleep_on_ticks", "tick_due"]

TICK_S = 0.1


def tick_due(now: float, pause: float, tick: float = TICK_S) -> float:
    """Loop time at which a step paused ``pause`` at ``now`` is due: the tick nearest ``now + pause`` (never before
    ``now``); ``now + pause`` itself when the pause is shorter than a tick."""
    if pause < tick:
        return now + pause
    due = round((now + pause) / tick) * tick
    return due if due > now else due + tick


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def sleep_on_ticks(pause: float, until: asyncio.Future[Any] | None = None) -> None:
    """Sleep about ``pause`` seconds, waking on the shared grid (see module docstring); or as soon as ``until`` is
    done."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(tick_due(loop.time(), pause), _wake, waiter)

    def done(_: asyncio.Future[Any]) -> None:
        _wake(waiter)

    if until is not None:
        until.add_done_callback(done)
    try:
        await waiter
    finally:
        handle.cancel()
        if until is not None:
            until.remove_done_callback(done)
