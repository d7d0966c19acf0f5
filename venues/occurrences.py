"""Occurrence counters for event keys, shared by the venues: how many identical bodies (same digest, same venue
millisecond) a gatherer has counted, forgotten by venue time.

Generations are buckets of ``horizon_ms / 2`` of venue time; a digest always lands in the bucket of its own
``ts_ms``, and buckets more than two behind the newest are dropped (memory ~ rate x horizon). A copy older than the
horizon gets ``late``: each venue chooses what such a copy is numbered (see its ``keys`` module).
"""

from __future__ import annotations

__all__ = ["Occurrences"]


class Occurrences:
    __slots__ = ("_buckets", "_late", "_newest", "_span")

    def __init__(self, horizon_ms: int, late: int) -> None:
        self._span = max(1, horizon_ms // 2)
        self._buckets: dict[int, dict[str, int]] = {}
        self._newest = -(1 << 62)
        self._late = late

    def next(self, key: str, ts_ms: int) -> int:
        bucket = ts_ms // self._span
        counts = self._buckets.get(bucket)
        if counts is None:
            if bucket > self._newest:
                self._newest = bucket
                for old in [b for b in self._buckets if b < bucket - 2]:
                    del self._buckets[old]
            elif bucket < self._newest - 2:
                return self._late  # older than the horizon
            counts = self._buckets[bucket] = {}
        n = counts.get(key, 0) + 1
        counts[key] = n
        return n

    @property
    def newest_ms(self) -> int:
        return self._newest * self._span

    def __len__(self) -> int:
        return sum(len(c) for c in self._buckets.values())
