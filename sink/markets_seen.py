"""Which market references the sink has already stored as they are, so that it upserts each change once.

Every gatherer publishes every market's reference (discovery at start-up, listing refreshes, lifecycle), so with three
gatherers the ``markets`` topic carries each reference three times, identical, in different batches: 60,000 upserts at
a 20,000-market start-up where 20,000 change anything, each one adapted row by row in the sink and applied by
PostgreSQL while the start-up's snapshots and events compete for the same CPU. Each gatherer stamps its copy with
its own time (``updated_ns``), so the copies differ only there. A reference equal, but for that time, to the last
one committed for its market is skipped: the row keeps its values with the first copy's time (``updated_at``,
``updated_ns``) and load time (``loaded_at``). A gatherer makes the same comparison before it republishes a
reference (:mod:`ingest.listing_refs`).

Pure bookkeeping, shared by the sink's writer lanes (a lock: they commit from their own threads). ``remember`` is
called only after the transaction that upserted the references committed; ``forget`` empties it when partitions move
(another sink may have written a market meanwhile). Bounded: past ``limit`` markets it starts again empty, so a
venue with more markets than that costs at most what it cost before.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable

__all__ = ["LIMIT", "MarketsSeen"]

LIMIT = 200_000  # markets remembered before starting again (a few hundred bytes each)


class MarketsSeen:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._stored: dict[Hashable, object] = {}
        self._lock = threading.Lock()

    def changed(self, key: Hashable, values: object) -> bool:
        """Does storing ``values`` (a reference without its time) for market ``key`` change what the sink
        committed?"""
        with self._lock:
            return self._stored.get(key) != values

    def remember(self, stored: Iterable[tuple[Hashable, object]]) -> None:
        """The values just committed for these markets."""
        with self._lock:
            for key, values in stored:
                if len(self._stored) >= self.limit and key not in self._stored:
                    self._stored.clear()
                self._stored[key] = values

    def forget(self) -> None:
        with self._lock:
            self._stored.clear()

    def __len__(self) -> int:
        return len(self._stored)
