"""Prometheus metrics of the sink stage (exported by ``mdpipe sink --metrics-port``)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from sink.latency import LatencyHistogram

__all__ = [
    "BATCH_ROWS",
    "BATCH_SECONDS",
    "DB_ERRORS",
    "DEAD_LETTERS",
    "DELTA_ALIASES",
    "DUPLICATES",
    "LAG_RECORDS",
    "LAG_SECONDS",
    "LIFECYCLE_ALIASES",
    "MARKETS",
    "MARKETS_UNCHANGED",
    "ROWS",
    "SLOW_BATCHES",
    "VENUE_TO_DB",
]

ROWS = Counter("mdpipe_sink_rows_total", "Rows committed to the database, per table (rate() = rows/s)", ["table"])
MARKETS = Counter("mdpipe_sink_markets_upserted_total", "Market reference rows upserted")
MARKETS_UNCHANGED = Counter(
    "mdpipe_sink_markets_unchanged_total",
    "Market references not upserted: the last one committed for their market had the same columns",
)
DUPLICATES = Counter("mdpipe_sink_duplicate_rows_total", "Rows already in the database, absorbed by the unique key")
LIFECYCLE_ALIASES = Counter(
    "mdpipe_sink_lifecycle_aliases_total", "Lifecycle alias records applied: keys a later copy brought (sink.lifecycle)"
)
DELTA_ALIASES = Counter(
    "mdpipe_sink_delta_aliases_total", "Alias delta records applied: a later copy's higher ordinal (sink.ordinals)"
)
DEAD_LETTERS = Counter("mdpipe_sink_dead_letters_total", "Records sent to the dlq topic", ["kind"])
SLOW_BATCHES = Counter("mdpipe_sink_slow_batches_total", "Batches that needed the staging/bisect path")
DB_ERRORS = Counter("mdpipe_sink_db_errors_total", "Database unavailable or failed (batch kept and retried)")
EXPIRED_RECORDS = Counter(
    "mdpipe_sink_expired_records_total",
    "Records deleted from the events or markets topic (retention) after the offset the database stores and before the "
    "sink read them: never loaded (checked at each assignment)",
    ["topic"],
)
BATCH_ROWS = Histogram(
    "mdpipe_sink_batch_rows", "Records per committed batch", buckets=(10, 100, 1000, 5000, 10_000, 20_000, 50_000, 1e5)
)
BATCH_SECONDS = Histogram(
    "mdpipe_sink_batch_seconds",
    "Time to commit one batch (COPY + offsets, one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG_RECORDS = Gauge("mdpipe_sink_consumer_lag_records", "High watermark minus committed offset", ["topic", "partition"])
LAG_SECONDS = Gauge(
    "mdpipe_sink_consumer_lag_seconds", "Age of the newest committed record while records are waiting (0 when none)"
)
VENUE_TO_DB = LatencyHistogram(
    "mdpipe_sink_venue_to_db_seconds",
    "Per committed row: seconds from the event's venue time (deltas, trades, tickers; the gatherer's receive time "
    "for snapshots, lifecycle and gaps) to the commit of its row (sink.latency)",
)
REGISTRY.register(VENUE_TO_DB)
