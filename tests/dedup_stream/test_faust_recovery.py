"""The Faust engine's end of a rebalance (dedup_stream.faust_recovery) without a broker: the fetch set, the install."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from faust.types import TP

from dedup_stream.faust_recovery import SeekFirstRecovery, freeze_fetch_set


class FetchingConsumer:
    """A consumer thread's fetch that takes a loop turn before it reads its partition set (as a real fetch waits
    for records while the event loop runs on)."""

    def __init__(self) -> None:
        self.asked: list[set[TP]] = []

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> dict[TP, Any]:
        await asyncio.sleep(0)
        self.asked.append(set(active_partitions or ()))
        return {}


def test_a_fetch_asks_for_the_partitions_active_when_it_started() -> None:
    """The restore pauses the changelog partitions while a fetch is under way: the live set becomes empty, which
    aiokafka reads as every assigned partition (the paused raw ones included, whose records Faust then discards
    past their position). The fetch must keep the set it started with."""
    changelog = TP("app-seen-changelog", 0)
    consumer = FetchingConsumer()
    freeze_fetch_set(consumer)
    live = {changelog}

    async def fetch_while_pausing() -> None:
        fetch = asyncio.ensure_future(consumer._getmany(active_partitions=live, timeout=1.0))
        await asyncio.sleep(0)
        live.discard(changelog)  # Recovery: pause_partitions(changelog partitions) once they are read
        await fetch

    asyncio.run(fetch_while_pausing())
    assert consumer.asked == [{changelog}]


def test_the_dedup_app_ends_its_rebalances_with_the_reordered_recovery(tmp_path: Path) -> None:
    from dedup_stream.app import build_app
    from dedup_stream.settings import DedupSettings
    from mdpipe.config import DedupConfig

    settings = DedupSettings(
        config=DedupConfig(app_id="t-recovery"),
        bootstrap_servers="127.0.0.1:9",
        raw_topics=["raw.g1"],
        partitions=3,
        workdir=tmp_path,
        events_topic="events",
        dlq_topic="dlq",
        replication_factor=1,
    )
    app = build_app(settings).faust
    assert isinstance(app.tables.recovery, SeekFirstRecovery)
    assert app.tables.recovery.logger.name == "faust.tables.recovery"
