"""The gatherer's periodic tasks wake the event loop together (ingest.ticks): steps due on the same tick of the
shared grid run in one loop iteration, so the loop wakes about as often as its most frequent task, not once per task
and step; each task still runs at about its own pace."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ingest.gatherer import Gatherer
from ingest.ticks import TICK_S, tick_due
from mdpipe.config import GatherConfig, VenueConfig


@given(st.floats(0.0, 1e6), st.floats(0.0, 100.0))
def test_a_pause_is_rounded_to_the_nearest_tick_unless_shorter_than_one(now: float, pause: float) -> None:
    due = tick_due(now, pause)
    assert due >= now
    if pause < TICK_S:
        assert due == now + pause
    else:
        assert due > now
        k = round(due / TICK_S)
        assert due == k * TICK_S  # on the grid: the same float for every task due on that tick
        assert abs(due - (now + pause)) <= TICK_S / 2 + 1e-6 * max(1.0, now)


class _Producer:
    def __init__(self) -> None:
        self.held: list[Any] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        pass


def test_periodic_tasks_share_the_loop_wake_ups() -> None:
    """Two periodic loops (steps every 0.1 s and every 0.25 s, as the broker watch and the watchdog) for ~1.5 s:
    the loop wakes about as often as the faster one steps (before: once per step of either)."""
    venue = VenueConfig(rest_url="http://x", ws_url="ws://x")
    g = Gatherer(
        GatherConfig(channels=["orderbook_delta"]),
        venue,
        _Producer(),  # type: ignore[arg-type]
        gatherer_id="g1",
        raw_topic="raw.g1",
        dlq_topic="dlq",
        markets_topic="markets",
    )
    steps = {"fast": 0, "slow": 0}

    def stepper(name: str, pause: float) -> Any:
        async def step() -> float:
            steps[name] += 1
            return pause

        return step

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        real_select = selector.select
        wakes = [0]

        def select(timeout: float | None = None) -> Any:
            events = real_select(timeout)
            if timeout is None or timeout > 0:  # the loop slept: a wake-up (no I/O here: a timer's)
                wakes[0] += 1
            return events

        selector.select = select
        tasks = [
            asyncio.create_task(g._keep_running(name, stepper(name, pause), initial=0.1, maximum=1.0))
            for name, pause in (("fast", 0.1), ("slow", 0.25))
        ]
        await asyncio.sleep(1.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        selector.select = real_select
        return wakes[0]

    wakes = asyncio.run(scenario())
    assert 12 <= steps["fast"] <= 17 and 5 <= steps["slow"] <= 8, steps  # each keeps about its own pace
    # every slow step shares a wake-up with a fast one (the test's own 1.5 s sleep is one more)
    assert wakes <= steps["fast"] + 2, (wakes, steps)
