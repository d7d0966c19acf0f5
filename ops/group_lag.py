"""Consumer-group lag as Kafka itself sees it: pure arithmetic for `mdpipe status` (the I/O is ops.probe).

Per partition: the group's committed offset, the partition's low and high watermarks, and the timestamp of the
first record the group has not processed (the record at the committed offset, or at the low watermark when
retention removed it or nothing is committed). From those:

- lag in records = high watermark - max(committed, low watermark) (low watermark when nothing is committed, as a
  group starting from the earliest offset would read);
- lag in seconds = now - timestamp of that first unprocessed record: how long the oldest record the group still
  has to process has been in the topic (0 when nothing waits; unknown when the record could not be read).
- expired records = low watermark - committed, when the committed offset is below the low watermark: records
  retention deleted before the group processed them (lost to it; ``mdpipe.kafka.expired_unread``), which the lag
  alone would hide.

Record timestamps are the producers' CreateTime (gatherers for raw topics, dedup for events) unless the topic
uses LogAppendTime: a producer whose clock is off shifts the seconds by as much.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mdpipe.kafka import expired_unread

__all__ = ["GroupLag", "PartitionLag", "lag_records", "lag_seconds", "next_record_offset", "summarise"]


def next_record_offset(committed: int | None, low: int) -> int:
    """The offset of the first record the group has not processed that the topic still holds."""
    if committed is None or committed < 0:
        return low
    return max(committed, low)


def lag_records(committed: int | None, low: int, high: int) -> int:
    """Records the group has not processed yet (never negative)."""
    return max(0, high - next_record_offset(committed, low))


def lag_seconds(records: int, waiting_since_ms: int | None, now_ms: int) -> float | None:
    """Seconds the oldest unprocessed record has waited: 0 with nothing waiting, None when its time is unknown."""
    if records <= 0:
        return 0.0
    if waiting_since_ms is None or waiting_since_ms <= 0:
        return None
    return round(max(0.0, (now_ms - waiting_since_ms) / 1000.0), 3)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed an offset for this partition
    low: int
    high: int
    lag_records: int
    lag_s: float | None
    owner: str  # the member holding the partition now ("client-id@host"), "" when no member holds it
    expired: int = 0  # records deleted before the group processed them (committed below the low watermark)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    role: str  # what the group is in the pipeline: dedup, sink
    state: str  # the coordinator's view: Stable, Empty, PreparingRebalance, Dead (unknown group) ...
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def lag_records(self) -> int:
        return sum(p.lag_records for p in self.partitions)

    @property
    def expired(self) -> int:
        return sum(p.expired for p in self.partitions)

    @property
    def lag_s(self) -> float | None:
        """The largest lag in seconds over the partitions (None when one that lags has no known time)."""
        values = [p.lag_s for p in self.partitions]
        if any(v is None for v in values):
            return None
        return max((v for v in values if v is not None), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "role": self.role,
            "state": self.state,
            "members": self.members,
            "lag_records": self.lag_records,
            "lag_s": self.lag_s,
            "expired": self.expired,
            "partitions": [asdict(p) for p in self.partitions],
        }


def summarise(
    group: str,
    role: str,
    state: str,
    members: int,
    offsets: Iterable[tuple[str, int, int | None, int, int]],
    waiting_since_ms: dict[tuple[str, int], int],
    owners: dict[tuple[str, int], str],
    now_ms: int,
) -> GroupLag:
    """A group's lag from ``(topic, partition, committed, low, high)`` rows and, per lagging partition, the
    timestamp of its first unprocessed record."""
    rows = []
    for topic, partition, committed, low, high in sorted(offsets):
        records = lag_records(committed, low, high)
        rows.append(
            PartitionLag(
                topic=topic,
                partition=partition,
                committed=committed if committed is not None and committed >= 0 else None,
                low=low,
                high=high,
                lag_records=records,
                lag_s=lag_seconds(records, waiting_since_ms.get((topic, partition)), now_ms),
                owner=owners.get((topic, partition), ""),
                expired=expired_unread(-1 if committed is None else committed, low),
            )
        )
    return GroupLag(group, role, state, members, tuple(rows))
