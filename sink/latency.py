"""The venue -> database latency histogram (``mdpipe_sink_venue_to_db_seconds``): per committed row, the seconds
from the event's origin to the COMMIT of the transaction that holds its row.

Origin time: the venue's own time (``ts_ms``) for book deltas, trades and tickers, which the venue stamps when the
event happens, so the figure includes the venue -> gatherer hop a user sees; the winning gatherer's receive time
(``recv_ns``) for book snapshots, lifecycle records and coverage gaps, whose ``ts_ms`` is not a send time (a
snapshot's position in its market's delta stream, which can be the time of a delta hours old on a quiet market; a
settlement time with a resolution of seconds; a gap's start). A venue clock ahead of ours reads as no delay (0).

Cost: the row builder appends each row's origin (one int64) to the batch's ``stamps`` as it builds the row
(:mod:`sink.rowcodec`, in C; :func:`origin_ms` on the Python path); after the commit :func:`bucket_ages` counts
the whole batch into the buckets (in C when built) and :class:`LatencyHistogram` adds the counts under one lock:
nothing per row in Python on the common path. Replays (``--from-ts``/``--to-ts``) are not observed (their
events are old by design).
"""

from __future__ import annotations

import bisect
import struct
import threading
from array import array
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from sink.records import RecDelta, RecTicker, RecTrade

__all__ = ["BOUNDS_S", "NAME", "LatencyHistogram", "bucket_ages", "origin_ms", "stamp"]

NAME = "mdpipe_sink_venue_to_db_seconds"
# the targets: p50 <= 100 ms, p99 <= 500 ms (issue 13), alerting at seconds (infra/prometheus/alerts.yml); fine
# steps where the targets are, coarse ones beyond (histogram_quantile interpolates linearly inside a bucket)
BOUNDS_S = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
BOUNDS_MS = tuple(round(b * 1000) for b in BOUNDS_S)
_STAMP = struct.Struct("=q")  # the C builder's layout: native int64
_VENUE_STAMPED = (RecDelta, RecTrade, RecTicker)  # their ts_ms is the venue's time of the event

try:
    from sink._rowcodec import ages as _ages_c  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler (or from older sources: sink.rowcodec warns)
    _ages_c = None


def origin_ms(rec: Any) -> int:
    """A decoded record's origin time (Unix ms): ts_ms for deltas, trades and tickers, else the receive time."""
    if type(rec) in _VENUE_STAMPED:
        return int(rec.ts_ms)
    return int(rec.recv_ns) // 1_000_000


def stamp(stamps: bytearray, rec: Any) -> None:
    """Append ``rec``'s origin to ``stamps`` as the C builder does (the Python path, one record)."""
    stamps += _STAMP.pack(origin_ms(rec))


def bucket_ages(stamps: bytes | bytearray, now_ms: int) -> tuple[list[int], int]:
    """(rows per bucket of :data:`BOUNDS_MS`, not cumulative, plus one count above the last bound; sum of the
    ages in ms) for the origins in ``stamps`` at ``now_ms``. An origin in the future counts as age 0."""
    if _ages_c is not None:
        counts, total = _ages_c(stamps, now_ms, BOUNDS_MS)
        return counts, total
    counts = [0] * (len(BOUNDS_MS) + 1)
    total = 0
    for origin in array("q", bytes(stamps)):
        age = max(0, now_ms - origin)
        total += age
        counts[bisect.bisect_left(BOUNDS_MS, age)] += 1
    return counts, total


class LatencyHistogram(Collector):
    """A Prometheus histogram fed a batch at a time (prometheus_client's Histogram observes one value per call)."""

    def __init__(self, name: str = NAME, documentation: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self._lock = threading.Lock()
        self._counts = [0] * (len(BOUNDS_S) + 1)
        self._sum_ms = 0

    def observe_batch(self, stamps: bytes | bytearray, commit_ns: int) -> None:
        """Count the rows whose origins are ``stamps``, committed at ``commit_ns`` (Unix ns)."""
        if not stamps:
            return
        counts, total = bucket_ages(stamps, commit_ns // 1_000_000)
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum_ms += total

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum in seconds."""
        with self._lock:
            counts, total = list(self._counts), self._sum_ms
        out, running = [], 0
        for bound, n in zip((*BOUNDS_S, float("inf")), counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out, total / 1000.0

    def collect(self) -> Iterator[HistogramMetricFamily]:
        buckets, total = self.snapshot()
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)
