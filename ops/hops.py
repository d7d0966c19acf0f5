"""Where an event's time goes: per-hop latency from the stamps each event collects on its way (pure, no I/O).

An event's trip, every boundary a wall-clock time on this host (ns; 0 or less = unknown):

=================  ====================================================================================
boundary           where it comes from
=================  ====================================================================================
gen                the venue generated it (the emulator's truth file)
recv               the winning gatherer received it (``Event.recv_ns``)
raw                the broker appended the winning copy to its raw topic (``Event.raw_ts_ms``: that record's
                   timestamp, LogAppendTime; ms)
dedup              the dedup worker's consume() returned it (``Event.dedup_ns``)
events             the broker appended the event to ``events`` (that record's timestamp, LogAppendTime; ms)
read               the sink's consume() returned it (the sink's hop trace, :mod:`sink.trace`)
commit             the sink's transaction holding its row committed (the hop trace)
=================  ====================================================================================

The hops (:data:`HOPS`) are the differences of consecutive boundaries, so for one event they add up exactly to
``venue->committed`` = commit - gen. The broker's append time is the acknowledgement time less the response's trip
back (the leader acknowledges once appended with one replica; with more, after the followers' fetch), and has ms
resolution (Kafka truncates): the hop ending at a broker stamp reads up to 1 ms short, the next one as much long.

Events are paired with the venue's by content identity (:func:`ops.verify.identity`), as ``mdpipe verify`` pairs
rows: identical copies in generation order with the pipeline's in receive order. A re-emitted event (two ``events``
records of one event key) counts once, with the record committed first (the one whose row the database kept).
Percentiles are exact (nearest rank over every value, :func:`ops.verify.percentile`), not bucket estimates.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

from ops.verify import Identity, percentile

__all__ = [
    "BOUNDARIES",
    "HOPS",
    "TOTAL",
    "HopJoin",
    "Trip",
    "distribution",
    "format_hops",
    "format_kinds",
    "hop_values",
]

BOUNDARIES = ("gen", "recv", "raw", "dedup", "events", "read", "commit")
HOPS = (
    "venue->gatherer",
    "gatherer->raw acked",
    "raw->dedup read",
    "dedup->events acked",
    "events->sink read",
    "sink read->committed",
)
TOTAL = "venue->committed"


class Trip(NamedTuple):
    """One event's stamps after the venue (ns, 0 = unknown) and its key (re-emits share it)."""

    event_key: str
    recv_ns: int
    raw_ns: int
    dedup_ns: int
    events_ns: int
    read_ns: int = 0
    commit_ns: int = 0


def hop_values(gen_ns: int, trip: Trip) -> list[float | None]:
    """The hops of one event (ms; None where a boundary is unknown), then venue->committed."""
    stamps = (gen_ns, trip.recv_ns, trip.raw_ns, trip.dedup_ns, trip.events_ns, trip.read_ns, trip.commit_ns)
    out: list[float | None] = [(b - a) / 1e6 if a > 0 and b > 0 else None for a, b in pairwise(stamps)]
    out.append((trip.commit_ns - gen_ns) / 1e6 if gen_ns > 0 and trip.commit_ns > 0 else None)
    return out


def distribution(values: Sequence[float] | array[float]) -> dict[str, float]:
    """p50/p99/max (ms, 0.1 ms) and count of ``values``, exact (nearest rank); {} when empty."""
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 50), 1),
        "p99": round(percentile(ordered, 99), 1),
        "max": round(ordered[-1], 1),
        "count": len(ordered),
    }


def _first_committed(trips: list[Trip]) -> list[Trip]:
    """One trip per event key: the one committed first (a re-emit's other records are absorbed by the database)."""
    if len(trips) == 1:
        return trips
    best: dict[str, Trip] = {}
    for t in trips:
        old = best.get(t.event_key)
        if old is None or (t.commit_ns > 0 and (old.commit_ns <= 0 or t.commit_ns < old.commit_ns)):
            best[t.event_key] = t
    return sorted(best.values(), key=lambda t: (t.recv_ns, t.event_key))


@dataclass
class HopJoin:
    """Pairs the venue's events (fed in generation order by :meth:`observe`) with the pipeline's trips.

    Hop values are kept per window: ``windows`` maps a name to the generation times ``[from_ns, to_ns)`` it covers
    (:meth:`table`). For each of ``marks`` (e.g. the times of kills), the earliest time each boundary was reached by
    an event generated at or after the mark (:meth:`first_after`). Over the first window, the same per kind of
    event (the identity's first field: delta, ticker, trade, lifecycle; :meth:`table_by_kind`), since one kind's
    waits (a lifecycle message held for its anchor) can set a hop's max while every other kind passes in ms.
    """

    trips: dict[Identity, list[Trip]]
    windows: dict[str, tuple[int, int]] = field(default_factory=lambda: {"all": (0, 2**63 - 1)})
    marks: Sequence[int] = ()
    paired: int = 0  # venue events given a trip (whatever their generation time)
    unpaired: int = 0  # venue events without one (not delivered, lost, or of a kind never stamped)
    _values: dict[str, list[array[float]]] = field(default_factory=dict)
    _firsts: list[list[int]] = field(default_factory=list)
    _kinds: dict[str, list[array[float]]] = field(default_factory=dict)
    _sorted: set[Identity] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._values = {name: [array("d") for _ in range(len(HOPS) + 1)] for name in self.windows}
        self._firsts = [[0] * len(BOUNDARIES) for _ in self.marks]

    def observe(self, identity: Identity | None, gen_ns: int) -> None:
        """One venue event (in generation order: identical copies pair with trips in receive order)."""
        found = self.trips.get(identity) if identity is not None else None
        if not found:
            self.unpaired += 1
            return
        if identity not in self._sorted:
            self._sorted.add(identity)
            found[:] = _first_committed(found)
            found.reverse()  # pop() takes the earliest
        trip = found.pop()
        self.paired += 1
        if self.marks:
            self._mark(gen_ns, trip)
        values: list[float | None] | None = None
        for i, (name, (lo, hi)) in enumerate(self.windows.items()):
            if lo <= gen_ns < hi:
                values = values or hop_values(gen_ns, trip)
                buckets = [self._values[name]]
                if i == 0:
                    kind = str(identity[0])  # type: ignore[index]
                    if kind not in self._kinds:
                        self._kinds[kind] = [array("d") for _ in range(len(HOPS) + 1)]
                    buckets.append(self._kinds[kind])
                for row in buckets:
                    for bucket, value in zip(row, values, strict=True):
                        if value is not None:
                            bucket.append(value)

    def _mark(self, gen_ns: int, trip: Trip) -> None:
        stamps = (gen_ns, trip.recv_ns, trip.raw_ns, trip.dedup_ns, trip.events_ns, trip.read_ns, trip.commit_ns)
        for mark, firsts in zip(self.marks, self._firsts, strict=True):
            if gen_ns < mark:
                continue
            for i, at in enumerate(stamps):
                if at > 0 and (firsts[i] == 0 or at < firsts[i]):
                    firsts[i] = at

    def first_after(self, index: int) -> dict[str, int]:
        """For mark ``index``: boundary -> earliest time (ns) an event generated at or after the mark reached it
        (boundaries no such event reached are left out)."""
        return {name: at for name, at in zip(BOUNDARIES, self._firsts[index], strict=True) if at > 0}

    def table(self, window: str = "all") -> dict[str, dict[str, float]]:
        """Hop -> its distribution (:func:`distribution`) over ``window``, then venue->committed."""
        return {name: distribution(v) for name, v in zip((*HOPS, TOTAL), self._values[window], strict=True)}

    def table_by_kind(self) -> dict[str, dict[str, dict[str, float]]]:
        """Kind of event -> its hop table (as :meth:`table`) over the first window, kinds in name order."""
        return {
            kind: {name: distribution(v) for name, v in zip((*HOPS, TOTAL), row, strict=True)}
            for kind, row in sorted(self._kinds.items())
        }


def format_hops(table: dict[str, dict[str, float]], extra: Iterable[tuple[str, dict[str, Any]]] = ()) -> str:
    """The hop table as text, one line per hop (then ``extra`` rows, e.g. venue->database from verify)."""
    lines = [f"  {'hop':<24}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'events':>10}"]
    for name, d in [*table.items(), *extra]:
        if not d:
            lines.append(f"  {name:<24}{'-':>10}{'-':>10}{'-':>10}{0:>10}")
            continue
        lines.append(
            f"  {name:<24}{d.get('p50', 0):>10.1f}{d.get('p99', 0):>10.1f}{d.get('max', 0):>10.1f}"
            f"{int(d.get('count', 0)):>10,}"
        )
    return "\n".join(lines)


def format_kinds(by_kind: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per kind of event: its count, venue->committed p50/p99/max, and the hop with the largest max (where
    that kind's slowest event waited longest)."""
    lines = [f"  {'kind':<12}{'events':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}  slowest hop (its max ms)"]
    for kind, table in by_kind.items():
        total = table.get(TOTAL) or {}
        hops = [(d["max"], name) for name, d in table.items() if name != TOTAL and d]
        worst = max(hops) if hops else None
        lines.append(
            f"  {kind:<12}{int(total.get('count', 0)):>10,}{total.get('p50', 0):>10.1f}{total.get('p99', 0):>10.1f}"
            f"{total.get('max', 0):>10.1f}  " + (f"{worst[1]} ({worst[0]:,.1f})" if worst else "-")
        )
    return "\n".join(lines)
