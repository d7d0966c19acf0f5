"""The gatherer producer logs repeated broker errors once per kind (an outage repeats them every few hundred ms)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import KafkaConfig
from mdpipe.kafka import producer_config


def test_repeated_broker_errors_log_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    p = RawProducer(
        producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:1")), Spool(tmp_path, 1 << 20), queue_max=10
    )
    for _ in range(50):
        p._on_error(
            KafkaError(
                KafkaError._TRANSPORT, "Connect to 127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
            )
        )
    assert sum(r.getMessage() == "kafka_error" for r in caplog.records) == 1
    assert not p.broker_up
