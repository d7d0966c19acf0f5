"""The gatherer producer's broker and delivery errors: repeated broker errors are logged once per kind (an outage
repeats them every few hundred ms); a delivery error a retry can fix spools the record, any other drops it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config


def test_repeated_broker_errors_log_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    conf = producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:1"))
    p = RawProducer(conf, Spool(tmp_path, 1 << 20), queue_max=10, warm_topics={})
    for _ in range(50):
        p._on_error(
            KafkaError(
                KafkaError._TRANSPORT, "Connect to 127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
            )
        )
    assert sum(r.getMessage() == "kafka_error" for r in caplog.records) == 1
    assert not p.broker_up


class _Report:
    def topic(self) -> str:
        return "raw.g1"

    def key(self) -> bytes:
        return b"M"

    def value(self) -> bytes:
        return b"v"


# what the gatherer's producer retries: mdpipe.kafka.TRANSIENT_PRODUCE_ERRORS and its own additions
TRANSIENT = [
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
    KafkaError._TIMED_OUT,
    KafkaError._FATAL,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
]


@pytest.mark.parametrize(
    ("code", "transient"),
    [pytest.param(c, True, id=KafkaError(c).name()) for c in TRANSIENT]
    + [pytest.param(KafkaError.MSG_SIZE_TOO_LARGE, False, id="MSG_SIZE_TOO_LARGE")],
)
def test_a_failed_delivery_is_spooled_when_a_retry_can_fix_it(tmp_path: Path, code: int, transient: bool) -> None:
    p = RawProducer(
        producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:1")), Spool(tmp_path, 1 << 20), warm_topics={}
    )
    report: Any = _Report()
    p._on_delivery(KafkaError(code), report)  # confluent-kafka's delivery errors are never retriable()
    assert (p.spooled, p.permanent_failures) == ((1, 0) if transient else (0, 1))
    p.close(timeout=0.2)
