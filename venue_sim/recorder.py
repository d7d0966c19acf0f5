"""What the protocol sessions and the server write the venue's record through (:mod:`venue_sim.record`).

A :class:`Recorder` knows the venue's position (the id of the last generated event) and a wall clock, so the
sans-I/O protocol code can stamp records without a clock of its own. Sessions without a recorder (no truth file,
the benchmark's baseline) write nothing and pay nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from venue_sim.record import Record

__all__ = ["RecordSink", "Recorder"]


class RecordSink(Protocol):
    def write(self, record: Record) -> None: ...


class Recorder:
    """Stamps positions and times; forwards records to ``sink`` (a :class:`venue_sim.record.RecordWriter`)."""

    __slots__ = ("_clock_ns", "_position", "sink")

    def __init__(
        self, sink: RecordSink, position: Callable[[], int], clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.sink = sink
        self._position = position
        self._clock_ns = clock_ns

    def position(self) -> int:
        """Id of the last event generated so far (0 before the first)."""
        return self._position()

    def now_ns(self) -> int:
        return self._clock_ns()

    def write(self, record: Record) -> None:
        self.sink.write(record)
