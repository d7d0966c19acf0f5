"""Pure decisions the native dedup worker takes when partitions are assigned or when it checks for idleness.

- :func:`copartitioned`: partition *i* of every raw topic must belong to the same worker (it owns the state of
  the markets hashed to *i*); the worker stops loudly if an assignment ever breaks that.
- :func:`restore_plan`: which changelog offsets rebuild a partition's local state, given the offset the local
  RocksDB says it already covers and the changelog's current low/high watermarks.
- :func:`caught_up`: whether a raw partition has nothing left to read (``--exit-when-idle``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CoPartitionError", "RestorePlan", "caught_up", "copartitioned", "restore_plan"]


class CoPartitionError(RuntimeError):
    """An assignment gave partition *i* of one raw topic to this worker but not partition *i* of another."""


def copartitioned(assignment: Iterable[tuple[str, int]], raw_topics: Sequence[str]) -> list[int]:
    """The partition numbers assigned, sorted, if every raw topic got exactly the same set; else raise.

    Topics outside ``raw_topics`` in ``assignment`` are an error too (the worker subscribes to raw topics only).
    """
    per_topic: dict[str, set[int]] = {topic: set() for topic in raw_topics}
    for topic, partition in assignment:
        if topic not in per_topic:
            raise CoPartitionError(f"assignment contains {topic}[{partition}], which is not a raw topic")
        per_topic[topic].add(partition)
    sets = list(per_topic.values())
    if any(s != sets[0] for s in sets[1:]):
        listing = "; ".join(f"{t}={sorted(p)}" for t, p in per_topic.items())
        raise CoPartitionError(f"raw topics are not co-partitioned in this assignment: {listing}")
    return sorted(sets[0]) if sets else []


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """Read changelog offsets ``[start, end)`` into the local state; with ``wipe``, discard the local state first."""

    start: int
    end: int
    wipe: bool = False

    @property
    def empty(self) -> bool:
        return self.start >= self.end


def restore_plan(covered: int | None, low: int, high: int) -> RestorePlan:
    """``covered``: the last changelog offset the local state already contains (None: unknown or fresh DB).

    A local offset at or beyond the high-water mark means the changelog was recreated or truncated under
    the local state (a new broker, a deleted topic): that state cannot be trusted, so it is wiped and the
    whole changelog is read. Offsets below ``low`` were removed by retention (older than the window): they
    are skipped, which the TTL would have done to their keys anyway.
    """
    if covered is None:
        return RestorePlan(low, high)
    if covered >= high:
        return RestorePlan(low, high, wipe=True)
    return RestorePlan(max(covered + 1, low), high)


def caught_up(position: int, committed: int, low: int, high: int) -> bool:
    """True when the next offset to read from a raw partition is at its high-water mark.

    ``position`` is the consumer's position (negative before it returned anything from the partition), then
    the group's ``committed`` offset (negative when none), then ``low`` (auto.offset.reset=earliest).
    """
    nxt = position if position >= 0 else committed if committed >= 0 else low
    return nxt >= high
