"""Consumer lag of a dedup worker's raw partitions, read from librdkafka's statistics (no broker round trip).

The native worker's consumer emits statistics once a second (served inside ``consume()``); :class:`RawLag` keeps,
per (raw topic, partition), the high watermark (the last stable offset: the worker reads ``read_committed``), the
group's committed offset, the low watermark and the worker's position. The exporter asks :meth:`RawLag.snapshot`
at scrape time for the partitions the worker owns *then*, so a partition taken away by a rebalance has no series
left behind for a dashboard to add to its new owner's.

Records: high watermark minus the committed offset (what ``kafka-consumer-groups`` shows, and what a restart would
read again). Seconds: age of the last frame the worker consumed, while frames wait behind its position (0 when it
has read everything); at an assignment the clock starts from the assignment, so a worker stuck before its first
frame (restoring, blocked) still shows a growing lag.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["PartitionOffsets", "RawLag", "parse_statistics"]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition's offsets as librdkafka last reported them (negative = unknown)."""

    high: int
    committed: int
    low: int
    position: int

    @property
    def lag_records(self) -> int:
        """Records after the group's committed offset (after the low watermark when nothing is committed)."""
        start = self.committed if self.committed >= 0 else max(self.low, 0)
        return max(0, self.high - start)

    @property
    def waiting(self) -> bool:
        """Records the worker has not consumed yet."""
        if self.position >= 0:
            return self.high > self.position
        return self.lag_records > 0


def parse_statistics(stats_json: str, topics: Collection[str]) -> dict[tuple[str, int], PartitionOffsets]:
    """The offsets of every partition of ``topics`` in one librdkafka statistics document (bad JSON: none)."""
    try:
        stats = json.loads(stats_json)
    except ValueError:
        return {}
    out: dict[tuple[str, int], PartitionOffsets] = {}
    for topic, info in (stats.get("topics") or {}).items():
        if topic not in topics:
            continue
        for name, part in (info.get("partitions") or {}).items():
            if name == "-1":  # librdkafka's internal "unassigned" partition
                continue
            stable, high = part.get("ls_offset", -1), part.get("hi_offset", -1)
            top = stable if stable >= 0 else high
            if top < 0:
                continue
            out[(topic, int(name))] = PartitionOffsets(
                high=top,
                committed=part.get("committed_offset", -1),
                low=part.get("lo_offset", -1),
                position=part.get("app_offset", -1),
            )
    return out


class RawLag:
    """Lag of the raw partitions one worker consumes; fed by the consumer thread, read by the metrics thread."""

    def __init__(self, topics: Collection[str]) -> None:
        self.topics = frozenset(topics)
        self._offsets: dict[tuple[str, int], PartitionOffsets] = {}
        self._last_consumed_ms = 0

    def update(self, stats_json: str) -> None:
        """librdkafka ``stats_cb``."""
        found = parse_statistics(stats_json, self.topics)
        if found:
            self._offsets = {**self._offsets, **found}  # one reference swap: the metrics thread sees old or new

    def assigned(self, now_ms: int) -> None:
        """Partitions were (re)assigned: forget the old offsets, start the lag clock now."""
        self._offsets = {}
        self._last_consumed_ms = now_ms

    def consumed(self, timestamp_ms: int) -> None:
        """The record timestamp (ms) of the last frame of a consumed batch."""
        if timestamp_ms > 0:
            self._last_consumed_ms = timestamp_ms

    def snapshot(self, owned: Collection[int], now_ms: int) -> tuple[dict[tuple[str, int], int], float]:
        """(lag in records per owned (topic, partition), lag in seconds) for the partitions ``owned`` now."""
        offsets = self._offsets
        records = {tp: o.lag_records for tp, o in offsets.items() if tp[1] in owned}
        waiting = any(o.waiting for tp, o in offsets.items() if tp[1] in owned)
        seconds = max(0.0, (now_ms - self._last_consumed_ms) / 1000.0) if waiting and self._last_consumed_ms else 0.0
        return records, seconds
