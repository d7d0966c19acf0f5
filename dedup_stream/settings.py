"""Settings of one dedup worker, shared by both engines (built from ``Config`` + CLI flags by ``dedup_stream.cli``).

Kept apart from the engines so that the native engine (:mod:`dedup_stream.native`) starts without importing Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dedup_stream.logic import TimeRange

__all__ = ["DedupSettings", "changelog_topic"]


def changelog_topic(app_id: str) -> str:
    """The state changelog of ``app_id`` (the name Faust gives its ``seen`` table's changelog, for both engines)."""
    return f"{app_id}-seen-changelog"


@dataclass(frozen=True)
class DedupSettings:
    """Everything one worker needs. Fields marked Faust-only are ignored by the native engine and vice versa."""

    app_id: str
    bootstrap_servers: str
    raw_topics: list[str]
    partitions: int
    workdir: Path
    events_topic: str = "events"
    dlq_topic: str = "dlq"
    window_s: float = 3600.0
    replication_factor: int = 1
    standby_replicas: int = 0  # Faust-only
    session_timeout_s: float = 10.0
    singles_horizon_s: float = 30.0
    time_range: TimeRange = field(default_factory=TimeRange)
    exit_when_idle: bool = False
    idle_s: float = 5.0
    buffer_maxsize: int = 65536  # Faust-only
    max_poll_records: int = 5000  # Faust: records per poll; native: messages per consume() batch
    commit_every: int = 20000
    commit_interval_s: float = 2.0
    linger_s: float = 0.02  # Faust-only
    linger_ms: int = 2  # native: producers (dedup.linger_ms)
    fetch_wait_ms: int = 30  # native: raw consumer (dedup.fetch_wait_ms)
    fetch_min_bytes: int = 256 << 10  # native: raw consumer (dedup.fetch_min_bytes)
    group_instance_id: str = ""  # native: static membership id ("" = dynamic membership)
    compression: str = "none"
    take: int = 1000  # Faust-only: > 1 consumes with stream.take_events(take) instead of one event at a time
    client_conf: dict[str, Any] = field(default_factory=dict)  # native: librdkafka connection keys (security)
