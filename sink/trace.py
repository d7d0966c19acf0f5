"""The sink's hop trace (``sink.hop_trace``): when the sink read each committed ``events`` record, and committed it.

The sink is the last stage: what it alone knows (when consume() handed it a record, when the transaction holding that
record committed) travels in no record. With ``sink.hop_trace`` set (``make bench-e2e`` and ``make bench-failover``
set it; off by default), the sink appends to that file, after each committed batch, one fixed-size entry per run of
consecutive offsets of one ``events`` partition the batch held::

    partition, first offset, last offset, read_ns (consume() returned that run), commit_ns (the COMMIT returned)

five little-endian int64 (40 bytes). consume() returns runs of one partition of hundreds of records, so tracing
costs the sink one entry per run and no work per record. :mod:`ops.hops_read` joins the entries with the
``events`` records by (partition, offset). The file is append-only across sink restarts; an entry cut short by a
SIGKILL is ignored when read.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = ["ENTRY", "HopTrace", "TraceEntry", "read_trace"]

ENTRY = struct.Struct("<5q")


class TraceEntry(NamedTuple):
    partition: int
    first_offset: int
    last_offset: int  # inclusive
    read_ns: int
    commit_ns: int


class HopTrace:
    """Appends committed batches' runs to the trace file (thread-safe: the sink's writer threads share one)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, runs: Iterable[tuple[int, int, int, int]], commit_ns: int) -> None:
        """Record ``runs`` (partition, first offset, last offset, read_ns) of a batch committed at ``commit_ns``."""
        data = b"".join(ENTRY.pack(p, first, last, read_ns, commit_ns) for p, first, last, read_ns in runs)
        if not data:
            return
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, data)  # one write per batch: O_APPEND keeps it whole

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_trace(path: str | Path) -> Iterator[TraceEntry]:
    """The entries of a trace file, in the order written (a trailing partial entry is skipped)."""
    data = Path(path).read_bytes()
    whole = len(data) - len(data) % ENTRY.size
    for fields in ENTRY.iter_unpack(memoryview(data)[:whole]):
        yield TraceEntry(*fields)
