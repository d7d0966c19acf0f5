"""Client settings derived from KafkaConfig (librdkafka keys and aiokafka kwargs)."""

from __future__ import annotations

import logging
import ssl

import pytest
from confluent_kafka import KafkaError

from mdpipe.config import ConfigError, KafkaConfig
from mdpipe.kafka import (
    TRANSIENT_PRODUCE_ERRORS,
    aiokafka_client_kwargs,
    consumer_config,
    kafka_client_config,
    producer_config,
)
from mdpipe.logging import KAFKA_CLIENT_LOGGER


def _without_logger(conf: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in conf.items() if k != "logger"}


def test_plaintext_is_just_bootstrap() -> None:
    assert _without_logger(kafka_client_config(KafkaConfig(bootstrap_servers="h:1"))) == {"bootstrap.servers": "h:1"}


def test_every_client_config_logs_through_the_project_logger() -> None:
    kafka = KafkaConfig(bootstrap_servers="h:1")
    for conf in (kafka_client_config(kafka), producer_config(kafka), consumer_config(kafka, "g")):
        assert isinstance(conf["logger"], logging.Logger) and conf["logger"].name == KAFKA_CLIENT_LOGGER


def test_sasl_ssl_maps_to_librdkafka_keys() -> None:
    cfg = KafkaConfig(
        bootstrap_servers="h:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
        ssl_cafile="/ca.pem",
    )
    assert _without_logger(kafka_client_config(cfg)) == {
        "bootstrap.servers": "h:1",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }


def test_sasl_without_mechanism_and_empty_bootstrap_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism"):
        kafka_client_config(KafkaConfig(bootstrap_servers="h:1", security_protocol="SASL_PLAINTEXT"))
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        kafka_client_config(KafkaConfig())


def test_producer_uses_murmur2_and_compression_and_extras_override() -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers="h:1", compression="zstd"), linger_ms=7)
    assert conf["partitioner"] == "murmur2_random"
    assert conf["compression.type"] == "zstd"
    assert conf["enable.idempotence"] is True
    assert conf["linger.ms"] == 7


def test_consumer_has_group_and_manual_commit() -> None:
    conf = consumer_config(KafkaConfig(bootstrap_servers="h:1"), "grp")
    assert (conf["group.id"], conf["enable.auto.commit"], conf["auto.offset.reset"]) == ("grp", False, "earliest")


def test_aiokafka_kwargs_carry_sasl_and_ssl_context() -> None:
    kwargs = aiokafka_client_kwargs(
        KafkaConfig(bootstrap_servers="h:1", security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u")
    )
    assert kwargs["sasl_mechanism"] == "PLAIN" and kwargs["sasl_plain_username"] == "u"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert aiokafka_client_kwargs(KafkaConfig(bootstrap_servers="h:1")) == {
        "bootstrap_servers": "h:1",
        "security_protocol": "PLAINTEXT",
    }


def test_transient_produce_errors_are_exactly_the_outage_purge_and_leadership_codes() -> None:
    """The sink's dead-letter sender retries a batch on exactly these delivery errors and stops the sink on any other
    (one its librdkafka producer does not call retriable); the gatherer's producer retries these and its own. A
    partition between leaders (a broker restarting) is among them: it must not stop the sink."""
    assert {
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
    } == TRANSIENT_PRODUCE_ERRORS
    assert KafkaError.MSG_SIZE_TOO_LARGE not in TRANSIENT_PRODUCE_ERRORS


def test_log_starts_share_one_deadline_and_keep_what_was_answered() -> None:
    import time

    from confluent_kafka import KafkaException

    from mdpipe.kafka import log_starts

    class SlowConsumer:
        """Answers each low-watermark lookup after 0.2 s; records the timeout each was given."""

        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def get_watermark_offsets(self, tp: object, timeout: float, cached: bool) -> tuple[int, int]:
            assert cached is False  # the broker's answer, not librdkafka's cache
            self.timeouts.append(timeout)
            time.sleep(0.2)
            return 10 * tp.partition, 100  # type: ignore[attr-defined]

    consumer = SlowConsumer()
    answered = []
    with pytest.raises(KafkaException, match="deadline passed"):
        for row in log_starts(consumer, [("t", p) for p in range(5)], timeout_s=0.5):
            answered.append(row)
    assert answered == [("t", 0, 0), ("t", 1, 10), ("t", 2, 20)]
    assert consumer.timeouts[0] <= 0.5  # each lookup gets what is left of the one deadline
    assert consumer.timeouts == sorted(consumer.timeouts, reverse=True) and consumer.timeouts[-1] < 0.2
