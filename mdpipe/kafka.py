"""Kafka client settings shared by every stage: connection + security (SASL/SSL) from KafkaConfig.

``kafka_client_config`` gives librdkafka (confluent-kafka) keys; ``producer_config`` adds the project-wide
producer rules (murmur2 partitioner as Java/aiokafka use, compression, idempotence); ``aiokafka_client_kwargs``
gives the same connection for aiokafka / Faust. ``report_stored`` and ``TRANSIENT_PRODUCE_ERRORS`` judge a producer's
delivery reports. ``expired_unread`` and ``log_starts`` tell records retention deleted before a
consumer read them.

Every librdkafka configuration carries ``logger`` = :func:`mdpipe.logging.kafka_client_logger`, so the clients'
log lines are structured, rate-limited records of the project's log format (JSON-safe), never raw stderr.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import KafkaError

from mdpipe.config import ConfigError, KafkaConfig
from mdpipe.logging import kafka_client_logger

__all__ = [
    "TRANSIENT_PRODUCE_ERRORS",
    "aiokafka_client_kwargs",
    "consumer_config",
    "expired_unread",
    "kafka_client_config",
    "log_starts",
    "producer_config",
    "report_stored",
]

TRANSIENT_PRODUCE_ERRORS: frozenset[int] = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
"""Delivery-report error codes that a later retry of the same record can fix: the broker was unreachable or did not
store the record in time, the producer purged its queue, or the partition was between leaders or short of in-sync
replicas (a broker restarting, a rolling upgrade). Check them besides ``err.retriable()``: confluent-kafka
leaves that false on delivery reports. A caller that can fix more (e.g. by re-creating its producer) adds its own."""


def report_stored(msg: Any) -> bool:
    """Does a librdkafka success report say where the broker stored the record?

    Not for an "implicit ack": a new idempotent producer's request to a partition failed with a not-stored error
    (NOT_LEADER_FOR_PARTITION, right after a broker restart or a topic creation) while its next request there,
    already in flight, succeeded; librdkafka then reports the failed request's records as delivered, without an
    offset, though nothing stored them (confluent-kafka-go issue 921). Callers treat such a report as a failure."""
    offset = msg.offset()
    return offset is not None and offset >= 0


def kafka_client_config(kafka: KafkaConfig) -> dict[str, Any]:
    """librdkafka keys for connecting: bootstrap servers, security protocol, SASL and SSL settings, and the
    project's logger for the client's log lines."""
    if not kafka.bootstrap_servers:
        raise ConfigError("config setting kafka.bootstrap_servers: empty (run `mdpipe infra up` or set it)")
    conf: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers, "logger": kafka_client_logger()}
    if kafka.security_protocol != "PLAINTEXT":
        conf["security.protocol"] = kafka.security_protocol.lower()
    if kafka.security_protocol.startswith("SASL"):
        if not kafka.sasl_mechanism:
            raise ConfigError(
                f"config setting kafka.sasl_mechanism: required with security_protocol={kafka.security_protocol}"
            )
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password
    if kafka.security_protocol in ("SSL", "SASL_SSL") and kafka.ssl_cafile:
        conf["ssl.ca.location"] = kafka.ssl_cafile
    return conf


def producer_config(kafka: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """Producer keys: connection + murmur2 partitioner (same partition as Java/aiokafka) + compression +
    idempotence. ``extra`` (librdkafka keys with '_' for '.') override, e.g. ``linger_ms=5``."""
    conf = kafka_client_config(kafka)
    conf.update(
        {
            "partitioner": "murmur2_random",
            "compression.type": kafka.compression,
            "enable.idempotence": True,
        }
    )
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


FETCH_QUEUE_BACKOFF_MS = 5


def expired_unread(committed: int, low: int) -> int:
    """Records of a partition deleted (by retention, or ``delete_records``) before a consumer read them: ``low -
    committed`` when it has a committed offset (``committed >= 0``) below the partition's log start ``low``; else 0
    (no commit: a new group starts at the oldest record on purpose; a low watermark unknown (negative) proves
    nothing). Our consumers reset to the earliest offset left, so without this check such a loss is silent."""
    if committed < 0 or low < 0 or committed >= low:
        return 0
    return low - committed


def log_starts(
    consumer: Any, partitions: Iterable[tuple[str, int]], timeout_s: float
) -> Iterator[tuple[str, int, int]]:
    """``(topic, partition, log start)`` for each partition, asked of the broker (not librdkafka's cache) one after
    another, all within one deadline of ``timeout_s``: raises ``KafkaException`` when a lookup fails or the deadline
    has passed, after yielding those already answered. Used with :func:`expired_unread` at an assignment."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout_s
    for topic, partition in partitions:
        left = deadline - time.monotonic()
        if left <= 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "log start lookups: deadline passed"))
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=left, cached=False)
        yield topic, partition, low


def consumer_config(kafka: KafkaConfig, group_id: str, **extra: Any) -> dict[str, Any]:
    """Consumer keys: connection + group, manual commits, earliest reset. ``extra`` as in producer_config."""
    conf = kafka_client_config(kafka)
    conf.update({"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    # librdkafka stops fetching a partition whose local queue is over its thresholds and looks again only after
    # fetch.queue.backoff.ms (default 1000): a consumer draining a backlog faster than that found its queue empty
    # and waited ~0.45 s for the next fetch (seen in make bench-sink: both writers idle; 5 ms: +20% rows/s)
    conf["fetch.queue.backoff.ms"] = FETCH_QUEUE_BACKOFF_MS
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


def aiokafka_client_kwargs(kafka: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/Consumer (and Faust's broker settings) with the same security."""
    if not kafka.bootstrap_servers:
        raise ConfigError("config setting kafka.bootstrap_servers: empty (run `mdpipe infra up` or set it)")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    return kwargs
