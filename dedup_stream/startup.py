"""Checks and preparations the dedup stage does on the broker before its Faust worker starts.

- :func:`check_partitions`: every raw topic and the events topic exist with the same partition count
  (co-partitioning is what lets one worker own partition *i* of every raw topic and of its table).
- :func:`seed_replay_offsets`: for a replay under a fresh app id, start each raw partition at the first
  offset whose timestamp is >= a given time, instead of the beginning of the topic.
- :func:`delete_internal_topics`: after a finished replay, remove the topics its app id created (the state
  changelog of either engine, Faust's assignor leader topic).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from mdpipe.config import ConfigError
from mdpipe.logging import get_logger

__all__ = ["check_partitions", "delete_internal_topics", "internal_topics", "seed_replay_offsets"]

log = get_logger(__name__)


def check_partitions(client_conf: dict[str, Any], topics: list[str], expected: int) -> None:
    """Raise :class:`ConfigError` (one line) unless every topic exists with ``expected`` partitions."""
    admin = AdminClient(client_conf)
    try:
        meta = admin.list_topics(timeout=15)
    except KafkaException as exc:
        raise ConfigError(f"dedup: cannot reach the broker at {client_conf.get('bootstrap.servers')}: {exc}") from None
    counts: dict[str, int] = {}
    for name in topics:
        info = meta.topics.get(name)
        if info is None or info.error is not None:
            raise ConfigError(f"dedup: topic {name} does not exist (create it with `mdpipe topics create`)")
        counts[name] = len(info.partitions)
    wrong = {name: n for name, n in counts.items() if n != expected}
    if wrong:
        listing = ", ".join(f"{name}={n}" for name, n in counts.items())
        raise ConfigError(f"dedup: topics must all have kafka.partitions={expected} partitions; found {listing}")


def seed_replay_offsets(client_conf: dict[str, Any], group_id: str, topics: list[str], from_ms: int) -> int:
    """Commit, for ``group_id``, the first offset at or after ``from_ms`` of every partition of ``topics``.

    Only when the group has no committed offset yet (a re-run of the same replay resumes where it stopped).
    Returns the number of partitions seeded.
    """
    consumer = Consumer({**client_conf, "group.id": group_id, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=15)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(meta.topics[t].partitions)]
        committed = consumer.committed(tps, timeout=15)
        if any(tp.offset >= 0 for tp in committed):
            log.info("replay_offsets_kept", group=group_id)
            return 0
        wanted = [TopicPartition(tp.topic, tp.partition, from_ms) for tp in tps]
        found = consumer.offsets_for_times(wanted, timeout=15)
        seeds = []
        for tp in found:
            if tp.offset < 0:  # nothing at/after from_ms: start at the end
                _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=15)
                tp = TopicPartition(tp.topic, tp.partition, high)
            seeds.append(tp)
        consumer.commit(offsets=seeds, asynchronous=False)
        log.info("replay_offsets_seeded", group=group_id, partitions=len(seeds), from_ms=from_ms)
        return len(seeds)
    finally:
        consumer.close()


def internal_topics(app_id: str) -> list[str]:
    """Topics a dedup worker of ``app_id`` creates: the state changelog (both engines) and Faust's leader topic."""
    from dedup_stream.settings import changelog_topic

    return [changelog_topic(app_id), f"{app_id}-__assignor-__leader"]


def delete_internal_topics(client_conf: dict[str, Any], app_id: str) -> list[str]:
    """Delete the :func:`internal_topics` of ``app_id`` that exist; returns their names."""
    admin = AdminClient(client_conf)
    existing = admin.list_topics(timeout=15).topics
    names = [t for t in internal_topics(app_id) if t in existing]
    for name, future in admin.delete_topics(names, operation_timeout=30).items() if names else ():
        try:
            future.result()
        except KafkaException as exc:
            log.warning("internal_topic_not_deleted", topic=name, error=str(exc))
    if names:
        log.info("internal_topics_deleted", app_id=app_id, topics=",".join(names))
    return names
