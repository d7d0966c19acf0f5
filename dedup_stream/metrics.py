"""Prometheus metrics of the dedup stage, read straight from the worker's :class:`~dedup_stream.logic.Stats`.

The hot path only increments plain integers; this collector turns them into metric families when
``/metrics`` is scraped, so exporting costs nothing per frame. ``mdpipe status`` can read the same figures
as a dict with :func:`summary` (in-process) or scrape the names in :data:`METRIC_NAMES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dedup_stream.expiry import ExpiredCounts
from dedup_stream.logic import Stats

__all__ = ["METRIC_NAMES", "DedupCollector", "LagSnapshot", "register", "summary"]

# name (without the _total suffix Prometheus adds to counters) -> (type, help)
METRIC_NAMES: dict[str, tuple[str, str]] = {
    "mdpipe_dedup_frames_in": ("counter", "Raw frames read, per gatherer (gap reports included)"),
    "mdpipe_dedup_frames_won": ("counter", "Frames that were the first copy of their event and were emitted"),
    "mdpipe_dedup_frames_duplicate": ("counter", "Frames dropped as later copies of an event already emitted"),
    "mdpipe_dedup_frames_reemitted": ("counter", "Winning frames emitted again because their origin was replayed"),
    "mdpipe_dedup_gap_reports": (
        "counter",
        "Gap reports (kind=gap) sent by each gatherer, forwarded as coverage records",
    ),
    "mdpipe_dedup_gap_windows": (
        "counter",
        "Gap reports by gatherer and window kind (seq, first_seq, down, resubscribe, rejected)",
    ),
    "mdpipe_dedup_gap_messages": ("counter", "Venue messages each gatherer reported missing in its gap reports"),
    "mdpipe_dedup_weak_matches": (
        "counter",
        "Copies matched to an emitted copy by weak key only (same body, receive time, subscriptions; none of their "
        "keys was seen): each is a judgement, not a proof (dedup_stream.logic)",
    ),
    "mdpipe_dedup_single_copy_events": (
        "counter",
        "Events delivered by only this gatherer (judged singles_horizon_s after the first copy)",
    ),
    "mdpipe_dedup_sync_lag_seconds": (
        "gauge",
        "How far this gatherer's newest frame is behind the newest frame of any gatherer (receive times)",
    ),
    "mdpipe_dedup_copy_lag_seconds": (
        "gauge",
        "Max delay of this gatherer's copies behind the first copy, over the last export interval",
    ),
    "mdpipe_dedup_match_age_seconds": (
        "gauge",
        "Age of the oldest first copy matched by a later copy in the last minute (must stay below the window)",
    ),
    "mdpipe_dedup_window_seconds": ("gauge", "How long an event key is remembered (RocksDB TTL, changelog retention)"),
    "mdpipe_dedup_invalid_frames": ("counter", "Undecodable raw frames sent to the dead-letter topic"),
    "mdpipe_dedup_unmappable_frames": ("counter", "Winning frames whose venue payload could not be normalised (DLQ)"),
    "mdpipe_dedup_events_out": ("counter", "Events produced to the events topic"),
    "mdpipe_dedup_out_of_range_frames": ("counter", "Frames outside a replay's time range (not emitted)"),
    "mdpipe_dedup_singles_pending_events": ("gauge", "Events still inside the singles horizon (in memory)"),
    "mdpipe_dedup_consumer_lag_records": (
        "gauge",
        "Raw records after the group's committed offset, per partition this worker owns now (native engine)",
    ),
    "mdpipe_dedup_consumer_lag_seconds": (
        "gauge",
        "Age of the last raw frame this worker consumed while frames wait behind it (0 when caught up; native)",
    ),
    "mdpipe_dedup_raw_expired_records": (
        "counter",
        "Raw records deleted by retention before this worker read them, per raw topic: never deduplicated nor "
        "emitted (native engine; dedup_stream.expiry)",
    ),
    "mdpipe_dedup_raw_offset_resets": (
        "counter",
        "Fetch positions the consumer reset to the oldest raw record left, per raw topic (native engine)",
    ),
}

# (records per owned (topic, partition), seconds) at scrape time; see dedup_stream.lag
LagSnapshot = Callable[[], tuple[dict[tuple[str, int], int], float]]

_PER_GATHERER = {
    "mdpipe_dedup_frames_in": "frames_in",
    "mdpipe_dedup_frames_won": "won",
    "mdpipe_dedup_frames_duplicate": "duplicates",
    "mdpipe_dedup_frames_reemitted": "reemitted",
    "mdpipe_dedup_gap_reports": "gaps",
    "mdpipe_dedup_gap_messages": "gap_missing",
    "mdpipe_dedup_single_copy_events": "singles",
    "mdpipe_dedup_weak_matches": "weak_matches",
}


class DedupCollector(Collector):
    """Exports a worker's counters; ``extra()`` supplies the app-level figures (events out, window...)."""

    def __init__(
        self,
        stats: Stats,
        extra: Callable[[], dict[str, float]],
        pending: Callable[[], int],
        lag: LagSnapshot | None = None,
        expired: ExpiredCounts | None = None,
    ) -> None:
        self.stats = stats
        self.extra = extra
        self.pending = pending
        self.lag = lag
        self.expired = expired

    def collect(self) -> Iterator[Any]:
        stats = self.stats
        gatherers = dict(stats.gatherers)
        for name, attr in _PER_GATHERER.items():
            family = CounterMetricFamily(name, METRIC_NAMES[name][1], labels=["gatherer"])
            for gid, g in sorted(gatherers.items()):
                family.add_metric([gid], getattr(g, attr))
            yield family
        sync = GaugeMetricFamily(
            "mdpipe_dedup_sync_lag_seconds", METRIC_NAMES["mdpipe_dedup_sync_lag_seconds"][1], labels=["gatherer"]
        )
        copy = GaugeMetricFamily(
            "mdpipe_dedup_copy_lag_seconds", METRIC_NAMES["mdpipe_dedup_copy_lag_seconds"][1], labels=["gatherer"]
        )
        for gid, g in sorted(gatherers.items()):
            sync.add_metric([gid], g.sync_lag_s(stats.last_recv_ns))
            copy.add_metric([gid], g.copy_lag_max_s)
        yield sync
        yield copy
        windows = CounterMetricFamily(
            "mdpipe_dedup_gap_windows", METRIC_NAMES["mdpipe_dedup_gap_windows"][1], labels=["gatherer", "kind"]
        )
        for gid, g in sorted(gatherers.items()):
            for kind, count in sorted(dict(g.gap_kinds).items()):
                windows.add_metric([gid, kind], count)
        yield windows
        extra = self.extra()
        for name in ("mdpipe_dedup_match_age_seconds", "mdpipe_dedup_window_seconds"):
            yield GaugeMetricFamily(name, METRIC_NAMES[name][1], value=extra.get(name, 0.0))
        yield GaugeMetricFamily(
            "mdpipe_dedup_singles_pending_events",
            METRIC_NAMES["mdpipe_dedup_singles_pending_events"][1],
            value=self.pending(),
        )
        counters = {
            "mdpipe_dedup_invalid_frames": stats.invalid,
            "mdpipe_dedup_out_of_range_frames": stats.out_of_range,
            "mdpipe_dedup_unmappable_frames": extra.get("mdpipe_dedup_unmappable_frames", 0),
            "mdpipe_dedup_events_out": extra.get("mdpipe_dedup_events_out", 0),
        }
        for name, value in counters.items():
            yield CounterMetricFamily(name, METRIC_NAMES[name][1], value=value)
        yield from self._lag_families()
        yield from self._expired_families()

    def _lag_families(self) -> Iterator[Any]:
        """Consumer lag of the partitions owned at this scrape only: a revoked partition leaves no series."""
        records_name, seconds_name = "mdpipe_dedup_consumer_lag_records", "mdpipe_dedup_consumer_lag_seconds"
        records = GaugeMetricFamily(records_name, METRIC_NAMES[records_name][1], labels=["topic", "partition"])
        seconds = GaugeMetricFamily(seconds_name, METRIC_NAMES[seconds_name][1])
        if self.lag is not None:
            per_partition, lag_s = self.lag()
            for (topic, partition), lag in sorted(per_partition.items()):
                records.add_metric([topic, str(partition)], lag)
            seconds.add_metric([], lag_s)
        yield records
        yield seconds

    def _expired_families(self) -> Iterator[Any]:
        """Raw records that expired unread and consumer offset resets, per raw topic (copies: the worker's thread
        adds to them)."""
        expired = self.expired or ExpiredCounts()
        for name, counts in (
            ("mdpipe_dedup_raw_expired_records", dict(expired.records)),
            ("mdpipe_dedup_raw_offset_resets", dict(expired.resets)),
        ):
            family = CounterMetricFamily(name, METRIC_NAMES[name][1], labels=["topic"])
            for topic, value in sorted(counts.items()):
                family.add_metric([topic], value)
            yield family


def register(collector: DedupCollector) -> DedupCollector:
    REGISTRY.register(collector)
    return collector


def summary(stats: Stats) -> dict[str, Any]:
    """The quality signals as plain data (for ``mdpipe status`` or logs)."""
    return {
        "gatherers": {
            gid: {
                "frames_in": g.frames_in,
                "won": g.won,
                "duplicates": g.duplicates,
                "reemitted": g.reemitted,
                "gap_reports": g.gaps,
                "gap_messages": g.gap_missing,
                "gap_kinds": dict(sorted(g.gap_kinds.items())),
                "single_copy_events": g.singles,
                "weak_matches": g.weak_matches,
                "sync_lag_s": round(g.sync_lag_s(stats.last_recv_ns), 3),
                "copy_lag_s": round(g.copy_lag_max_s, 3),
            }
            for gid, g in sorted(stats.gatherers.items())
        },
        "invalid": stats.invalid,
        "out_of_range": stats.out_of_range,
    }
