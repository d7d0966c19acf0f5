"""Topic layout of the pipeline: names, creation (broker auto-create is off) and the shared start-up check.

Topics (each prefixed by ``kafka.topic_prefix``): ``raw.<gatherer id>`` per gatherer, ``events``, ``dlq`` and the
compacted ``markets``, all with ``kafka.partitions`` partitions. Every stage calls :func:`check_partitions` at
start-up: raw topics and ``events`` must exist with the same partition count, because partition i of each holds
the same markets (murmur2 on the market id).

Raw topics and ``events`` stamp each record with the broker's append time (``message.timestamp.type=
LogAppendTime``), not the producer's clock: that is when the record was stored (≈ acknowledged), a hop boundary of
:mod:`ops.hops`, always increasing within a partition (a seek by time never skips a late record), and free for the
clients. Topics created before this setting keep theirs (``kafka-configs --alter`` changes it in place).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mdpipe.config import Config, ConfigError
from mdpipe.kafka import kafka_client_config
from mdpipe.logging import get_logger

__all__ = [
    "PartitionMismatchError",
    "TopicInfo",
    "TopicNames",
    "TopicSpec",
    "check_partitions",
    "describe_topics",
    "ensure_topics",
    "topic_names",
    "topic_specs",
]

log = get_logger(__name__)

APPEND_TIME = "LogAppendTime"  # message.timestamp.type of the raw topics and events (see the module docstring)


class PartitionMismatchError(ConfigError):
    """Raw topics / ``events`` are missing or disagree on their partition count (one-line message)."""


@dataclass(frozen=True)
class TopicNames:
    """The pipeline's topic names for one configuration."""

    raw: dict[str, str]  # gatherer id -> topic
    events: str
    dlq: str
    markets: str

    def all(self) -> list[str]:
        return [*self.raw.values(), self.events, self.dlq, self.markets]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicInfo:
    """What the broker says about one topic."""

    name: str
    partitions: int
    replication: int
    retention_ms: int | None
    cleanup_policy: str


def topic_names(config: Config) -> TopicNames:
    """Names of raw.<id> (per config.gather.ids), events, dlq and markets, with kafka.topic_prefix."""
    p = config.kafka.topic_prefix
    return TopicNames(
        raw={gid: f"{p}raw.{gid}" for gid in config.gather.ids},
        events=f"{p}events",
        dlq=f"{p}dlq",
        markets=f"{p}markets",
    )


def topic_specs(config: Config, extra: Iterable[str] = ()) -> list[TopicSpec]:
    """What :func:`ensure_topics` creates; ``extra`` names are created like raw topics (same retention)."""
    k = config.kafka
    names = topic_names(config)

    def spec(name: str, **cfg: Any) -> TopicSpec:
        settings = {"min.insync.replicas": str(k.min_insync_replicas), **{key: str(v) for key, v in cfg.items()}}
        return TopicSpec(name, k.partitions, k.replication_factor, settings)

    stamped = {"message.timestamp.type": APPEND_TIME}
    specs = [spec(n, **{"retention.ms": k.raw_retention_ms}, **stamped) for n in names.raw.values()]
    specs += [spec(n, **{"retention.ms": k.raw_retention_ms}, **stamped) for n in extra]
    specs.append(spec(names.events, **{"retention.ms": k.events_retention_ms}, **stamped))
    specs.append(spec(names.dlq, **{"retention.ms": k.dlq_retention_ms}))
    specs.append(spec(names.markets, **{"cleanup.policy": "compact"}))
    return specs


def _admin(config: Config) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_client_config(config.kafka))


def _partition_counts(admin: Any, timeout: float) -> dict[str, int]:
    meta = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}


def ensure_topics(config: Config, extra: Iterable[str] = (), timeout: float = 30.0) -> dict[str, str]:
    """Create the pipeline's topics that are missing; return {topic: "created" | "exists"}.

    Then runs :func:`check_partitions` (an existing topic with another partition count raises).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(config)
    specs = topic_specs(config, extra)
    existing = _partition_counts(admin, timeout)
    result = {s.name: "exists" for s in specs if s.name in existing}
    missing = [s for s in specs if s.name not in existing]
    if missing:
        new = [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in missing]
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                    raise
                result[name] = "exists"
    log.info("topics_ensured", **{name.replace(".", "_"): state for name, state in result.items()})
    _wait_visible([s.name for s in missing], admin, timeout)
    check_partitions(config, extra=extra, admin=admin, timeout=timeout)
    return result


def _wait_visible(names: list[str], admin: Any, timeout: float) -> None:
    """A created topic reaches the metadata a client sees a moment after CreateTopics returns (seen on a broker
    that had just started): wait for it, so the check that follows does not call it missing."""
    deadline = time.monotonic() + timeout
    while names:
        counts = _partition_counts(admin, timeout)
        names = [n for n in names if n not in counts]
        if not names or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def check_partitions(config: Config, extra: Iterable[str] = (), admin: Any = None, timeout: float = 30.0) -> int:
    """All raw topics and ``events`` exist with one partition count; return it, else raise
    :class:`PartitionMismatchError` with one line naming the offending topics and their counts."""
    admin = admin or _admin(config)
    names = topic_names(config)
    wanted = [*names.raw.values(), *extra, names.events]
    counts = _partition_counts(admin, timeout)
    missing = [n for n in wanted if n not in counts]
    if missing:
        raise PartitionMismatchError(
            f"kafka topics missing: {', '.join(missing)} (create them with `mdpipe topics create`)"
        )
    found = {n: counts[n] for n in wanted}
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        listing = ", ".join(f"{n}={c}" for n, c in found.items())
        raise PartitionMismatchError(
            f"kafka topics disagree on partition count: {listing} "
            f"(raw topics and events must be equal; kafka.partitions={config.kafka.partitions})"
        )
    if distinct[0] != config.kafka.partitions:
        log.warning("partitions_differ_from_config", topics=distinct[0], config=config.kafka.partitions)
    return distinct[0]


def describe_topics(config: Config, names: Iterable[str] | None = None, timeout: float = 30.0) -> list[TopicInfo]:
    """Partitions, replication, retention and cleanup policy of ``names`` (default: the pipeline's topics
    that exist), as the broker reports them."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = _admin(config)
    meta = admin.list_topics(timeout=timeout)
    chosen = list(names) if names is not None else topic_names(config).all()
    present = [n for n in chosen if n in meta.topics and meta.topics[n].error is None]
    if not present:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in present]
    configs = {r.name: fut.result() for r, fut in admin.describe_configs(resources, request_timeout=timeout).items()}
    out = []
    for name in present:
        topic = meta.topics[name]
        cfg = configs.get(name, {})
        retention = cfg["retention.ms"].value if "retention.ms" in cfg else None
        out.append(
            TopicInfo(
                name=name,
                partitions=len(topic.partitions),
                replication=len(next(iter(topic.partitions.values())).replicas) if topic.partitions else 0,
                retention_ms=int(retention) if retention is not None else None,
                cleanup_policy=cfg["cleanup.policy"].value if "cleanup.policy" in cfg else "",
            )
        )
    return out
