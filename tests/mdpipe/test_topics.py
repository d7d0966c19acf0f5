"""Topic layout: names and specs (pure), creation/description and the partition check on the real broker."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from mdpipe.config import Config, ConfigError, load_config
from mdpipe.topics import (
    PartitionMismatchError,
    TopicInfo,
    check_partitions,
    describe_topics,
    ensure_topics,
    topic_names,
    topic_specs,
)
from mdpipe.topics_cli import format_table


def _config(**kafka: object) -> Config:
    base = load_config(environ={}, use_infra_state=False)
    return msgspec.structs.replace(base, kafka=msgspec.structs.replace(base.kafka, **kafka))


def test_topic_names_follow_gatherer_ids_and_prefix() -> None:
    names = topic_names(_config(topic_prefix="x."))
    assert names.raw == {"g1": "x.raw.g1", "g2": "x.raw.g2", "g3": "x.raw.g3"}
    assert (names.events, names.dlq, names.markets) == ("x.events", "x.dlq", "x.markets")
    assert names.all()[-3:] == ["x.events", "x.dlq", "x.markets"]


def test_topic_specs_carry_partitions_retention_and_compaction() -> None:
    cfg = _config(partitions=4, raw_retention_ms=1000, events_retention_ms=2000, dlq_retention_ms=3000)
    specs = {s.name: s for s in topic_specs(cfg, extra=["side"])}
    assert {s.partitions for s in specs.values()} == {4}
    assert specs["raw.g2"].config["retention.ms"] == "1000"
    assert specs["side"].config["retention.ms"] == "1000"
    assert specs["events"].config["retention.ms"] == "2000"
    assert specs["dlq"].config["retention.ms"] == "3000"
    assert specs["markets"].config["cleanup.policy"] == "compact"
    assert all(s.config["min.insync.replicas"] == "1" for s in specs.values())
    stamped = {n for n, s in specs.items() if s.config.get("message.timestamp.type") == "LogAppendTime"}
    assert stamped == {"raw.g1", "raw.g2", "raw.g3", "side", "events"}


def test_format_table_aligns_columns_and_humanises_retention() -> None:
    rows = [TopicInfo("raw.g1", 6, 1, 7 * 86_400_000, "delete"), TopicInfo("markets", 6, 1, -1, "compact")]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["topic", "partitions", "replication", "retention", "cleanup"]
    assert lines[1].split() == ["raw.g1", "6", "1", "7d", "delete"]
    assert lines[2].split() == ["markets", "6", "1", "forever", "compact"]
    column = lines[0].index("partitions")
    assert lines[1][column] == "6" and lines[2][column] == "6"  # aligned under the header


def test_partition_mismatch_is_a_config_error() -> None:
    assert issubclass(PartitionMismatchError, ConfigError)


@pytest.mark.integration
def test_ensure_then_describe_agree(mdpipe_config: Config) -> None:
    cfg = msgspec.structs.replace(mdpipe_config, kafka=msgspec.structs.replace(mdpipe_config.kafka, partitions=3))
    first = ensure_topics(cfg)
    names = topic_names(cfg)
    assert first == dict.fromkeys(names.all(), "created")
    assert ensure_topics(cfg) == dict.fromkeys(names.all(), "exists")  # idempotent
    rows = {r.name: r for r in describe_topics(cfg)}
    assert set(rows) == set(names.all())
    assert {r.partitions for r in rows.values()} == {3}
    assert rows[names.markets].cleanup_policy == "compact"
    assert rows[names.events].retention_ms == cfg.kafka.events_retention_ms
    assert rows[names.dlq].retention_ms == cfg.kafka.dlq_retention_ms
    assert check_partitions(cfg) == 3


@pytest.mark.integration
def test_check_partitions_names_the_mismatching_topic(
    mdpipe_config: Config, make_topics: Callable[..., list[str]]
) -> None:
    names = topic_names(mdpipe_config)
    make_topics([names.raw["g2"]], partitions=2)  # created by someone else with the wrong count
    with pytest.raises(PartitionMismatchError) as info:
        ensure_topics(mdpipe_config)
    message = str(info.value)
    assert "\n" not in message
    assert f"{names.raw['g2']}=2" in message
    assert f"{names.raw['g1']}=6" in message and f"{names.events}=6" in message


@pytest.mark.integration
def test_check_partitions_reports_missing_topics(mdpipe_config: Config) -> None:
    names = topic_names(mdpipe_config)
    with pytest.raises(PartitionMismatchError, match=r"missing: .*raw\.g1.*events"):
        check_partitions(mdpipe_config)
    assert names.events not in {r.name for r in describe_topics(mdpipe_config)}


@pytest.mark.integration
def test_raw_and_events_records_carry_the_brokers_append_time(mdpipe_config: Config) -> None:
    """A hop boundary (ops.hops): whatever timestamp the producer sets, a raw or events record comes back stamped
    with the time the broker stored it; the dlq keeps the producer's."""
    import time

    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition

    ensure_topics(mdpipe_config)
    names = topic_names(mdpipe_config)
    bootstrap = mdpipe_config.kafka.bootstrap_servers
    producer = Producer({"bootstrap.servers": bootstrap})
    topics = [names.raw["g1"], names.events, names.dlq]
    before_ms = time.time_ns() // 1_000_000
    for topic in topics:
        producer.produce(topic, b"x", partition=0, timestamp=1_000_000_000_000)  # 2001: far from now
    assert producer.flush(30) == 0
    after_ms = time.time_ns() // 1_000_000
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        got = {}
        for topic in topics:
            consumer.assign([TopicPartition(topic, 0, 0)])
            msg = consumer.consume(1, 15)[0]
            got[topic] = msg.timestamp()
    finally:
        consumer.close()
    for topic in (names.raw["g1"], names.events):
        kind, ts = got[topic]
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before_ms - 1 <= ts <= after_ms + 1, (topic, got[topic])
    assert got[names.dlq] == (TIMESTAMP_CREATE_TIME, 1_000_000_000_000)
