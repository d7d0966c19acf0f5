"""Prometheus metrics of the gatherer stage (``mdpipe_gather_*``), labelled by gatherer id.

The hot path keeps plain integer counters (the venue session's stats, the producer);
:func:`ingest.gatherer.Gatherer` copies them here about once a second, so scraping costs the hot path nothing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BROKER_REACHABLE",
    "BROKER_UNREACHABLE_SECONDS",
    "CONNECTIONS_UP",
    "DEAD_LETTERS",
    "DISCOVERY_ERRORS",
    "DROPPED",
    "DUPLICATES",
    "FRAMES",
    "GAPS",
    "LIFECYCLE",
    "LIFECYCLE_KEYS",
    "LIFECYCLE_UNKNOWN",
    "PRODUCER_QUEUE",
    "PRODUCE_LATENCY",
    "RECONNECTS",
    "REST_RATE_LIMITED",
    "REST_REQUESTS",
    "REST_STALE",
    "REST_WAIT",
    "SPOOLING",
    "SPOOL_BYTES",
    "SPOOL_FSYNC",
    "SPOOL_RECORDS",
    "SUBSCRIBED_MARKETS",
    "TASK_FAILURES",
    "VENUE_ERRORS",
]

FRAMES = Counter("mdpipe_gather_frames_total", "Market messages recorded, by kind", ["gatherer", "kind"])
CONNECTIONS_UP = Gauge("mdpipe_gather_connections_up", "Open venue WebSocket connections", ["gatherer"])
SUBSCRIBED_MARKETS = Gauge("mdpipe_gather_subscribed_markets", "Markets held by the gatherer", ["gatherer"])
RECONNECTS = Counter("mdpipe_gather_reconnects_total", "WebSocket reconnects, by reason", ["gatherer", "reason"])
GAPS = Counter("mdpipe_gather_gaps_total", "Sequence gaps detected (per sid)", ["gatherer"])
DUPLICATES = Counter("mdpipe_gather_duplicate_seq_total", "Messages with an already seen seq", ["gatherer"])
LIFECYCLE_KEYS = Counter(
    "mdpipe_gather_lifecycle_keys_total",
    "Lifecycle copies keyed by a fallback (the venue's lifecycle keying): backward (no anchor followed), loose "
    "(no anchor before them: matched by weak key in dedup), uncertain (no key sure to be shared), unanchored "
    "(no anchor at all); and the copies a lifecycle subscription still waited to key when it ended: ended_dropped "
    "(the gatherer's other subscription certainly received them all), ended_sent (keyed then and sent)",
    ["gatherer", "how"],
)
VENUE_ERRORS = Counter("mdpipe_gather_venue_errors_total", "Error replies from the venue", ["gatherer"])
DEAD_LETTERS = Counter("mdpipe_gather_dlq_total", "Malformed venue frames sent to the dlq topic", ["gatherer"])
DISCOVERY_ERRORS = Counter("mdpipe_gather_discovery_errors_total", "Failed REST discovery calls", ["gatherer"])
PRODUCE_LATENCY = Histogram(
    "mdpipe_gather_produce_latency_seconds",
    "produce() to broker acknowledgement (sampled: one release a second, 1 in 8 of its frames; ingest.producer)",
    ["gatherer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PRODUCER_QUEUE = Gauge("mdpipe_gather_producer_queue_messages", "Messages in the producer not yet acked", ["gatherer"])
SPOOL_RECORDS = Gauge("mdpipe_gather_spool_records", "Records waiting in the on-disk spool", ["gatherer"])
SPOOL_BYTES = Gauge("mdpipe_gather_spool_bytes", "Bytes in the on-disk spool", ["gatherer"])
DROPPED = Counter("mdpipe_gather_dropped_frames_total", "Frames dropped because the spool/disk was full", ["gatherer"])
LIFECYCLE = Counter(
    "mdpipe_gather_lifecycle_messages_total",
    "market_lifecycle_v2 messages by event_type (none = the metadata form; unknown types past 32 = other)",
    ["gatherer", "type"],
)
LIFECYCLE_UNKNOWN = Counter(
    "mdpipe_gather_lifecycle_unknown_total",
    "market_lifecycle_v2 messages of a type the gatherer does not know (stored, market kept); past 32 types = other",
    ["gatherer", "type"],
)
REST_STALE = Counter(
    "mdpipe_gather_rest_stale_total", "REST statuses overridden by a newer lifecycle change", ["gatherer"]
)
TASK_FAILURES = Counter(
    "mdpipe_gather_task_failures_total", "Failed iterations of a background loop, retried", ["gatherer", "task"]
)
REST_REQUESTS = Counter(
    "mdpipe_gather_rest_requests_total",
    "REST requests sent to the venue, by purpose (listing, lookup, refresh)",
    ["gatherer", "purpose"],
)
REST_RATE_LIMITED = Counter(
    "mdpipe_gather_rest_rate_limited_total", "REST answers HTTP 429 (too many requests) from the venue", ["gatherer"]
)
REST_WAIT = Counter(
    "mdpipe_gather_rest_wait_seconds_total",
    "Seconds REST requests waited before being sent: pace = gather.rest_requests_per_s, backoff = after a 429",
    ["gatherer", "reason"],
)
BROKER_REACHABLE = Gauge(
    "mdpipe_gather_broker_reachable",
    "1 when the broker answered lately, 0 while it does not (ingest.outage)",
    ["gatherer"],
)
BROKER_UNREACHABLE_SECONDS = Gauge(
    "mdpipe_gather_broker_unreachable_seconds",
    "Seconds since the broker was last reachable (since start when it never was); 0 while reachable",
    ["gatherer"],
)
SPOOLING = Gauge(
    "mdpipe_gather_spooling", "1 while new frames go to the on-disk spool instead of the broker", ["gatherer"]
)
SPOOL_FSYNC = Histogram(
    "mdpipe_gather_spool_fsync_seconds",
    "Duration of one spool fsync (every gather.spool_fsync_s while spooling)",
    ["gatherer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
