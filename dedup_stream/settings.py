"""Settings of one dedup worker, shared by both engines (built from ``Config`` + CLI flags by ``dedup_stream.cli``).

The stage's tuning lives in its config section (:class:`mdpipe.config.DedupConfig`, ``[dedup]``), which the settings
carry whole with four of the command line's overrides applied (``--app-id``, ``--window-s``, ``--session-timeout-s``,
``--standby-replicas``; the command itself uses ``--engine``, ``--metrics-port`` and ``--workdir``, and the resolved
``--group-instance-id`` is ``static_member_id``): no option of that section is repeated here. Beside it, what the
command derives from the rest of the config (broker, topics, partitions, replication, the producers' compression,
client keys) and from its flags (work directory, replay range, idle exit, the Faust engine's ``--take``).

Kept apart from the engines so that the native engine (:mod:`dedup_stream.native`) starts without importing Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dedup_stream.logic import TimeRange
from mdpipe.config import DedupConfig

__all__ = ["DedupSettings", "changelog_topic"]


def changelog_topic(app_id: str) -> str:
    """The state changelog of ``app_id`` (the name Faust gives its ``seen`` table's changelog, for both engines)."""
    return f"{app_id}-seen-changelog"


@dataclass(frozen=True)
class DedupSettings:
    """Everything one worker needs: ``config`` (the ``dedup`` section, overrides applied) and what is derived."""

    config: DedupConfig
    bootstrap_servers: str
    raw_topics: list[str]
    partitions: int
    workdir: Path
    events_topic: str
    dlq_topic: str
    replication_factor: int
    time_range: TimeRange = field(default_factory=TimeRange)
    exit_when_idle: bool = False  # --exit-when-idle: stop once every raw partition is read to its end
    idle_s: float = 5.0  # --idle-s: how long without frames counts as idle
    take: int = 1000  # Faust engine, --take: > 1 consumes with stream.take_events(take) instead of one at a time
    compression: str = "none"  # the producers' (the Faust engine's client has no lz4: none or gzip there)
    static_member_id: str = ""  # native: group.instance.id resolved from dedup.group_instance_id ("" = dynamic)
    client_conf: dict[str, Any] = field(default_factory=dict)  # native: librdkafka connection keys (security)

    @property
    def app_id(self) -> str:
        return self.config.app_id

    @property
    def window_s(self) -> float:
        return self.config.window_s
