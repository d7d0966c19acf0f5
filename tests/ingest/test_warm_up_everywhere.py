"""Every gatherer starts on the reporting producer until its raw topic's partitions each stored a frame: the one
``mdpipe gather`` builds, and the ones the integration tests run. A gatherer whose producer skips that warm-up sends
its first frames through the failure-only producer, where a librdkafka implicit ack loses them without a word
(:mod:`ingest.producer`); a test built that way checks a gatherer nobody runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest import cli as gather_cli
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import Config, KafkaConfig
from mdpipe.kafka import producer_config


def test_mdpipe_gather_warms_up_on_its_raw_topic(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    gather_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["gather", "--id", "g1", "--no-auth", "--spool-dir", str(tmp_path)])
    config = Config(kafka=KafkaConfig(bootstrap_servers="127.0.0.1:9", partitions=4))
    g = gather_cli.build_gatherer(args, config)  # built, not started: the broker is never asked
    try:
        assert g.producer.warm_topics == {"raw.g1": 4}, "no start-up check ran: the config's partition count"
        assert g.producer._p is g.producer._loud
    finally:
        g.producer.close(timeout=0.1)


def test_the_tests_gatherer_warms_up_as_mdpipe_gathers_does(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    """The helper every gatherer integration test uses asks the broker for the raw topic's partition count."""
    raw, dlq, markets = make_topics(3, partitions=3)
    where = SimpleNamespace(rest_url="http://127.0.0.1:9/trade-api/v2", ws_url="ws://127.0.0.1:9/ws")
    g = ih.make_gatherer(
        kafka_bootstrap, where, tmp_path / "spool", topics={"raw": raw, "dlq": dlq, "markets": markets}
    )
    try:
        assert g.producer.warm_topics == {raw: 3}, "the helper's producer skipped the warm-up (before this test)"
        assert g.producer._p is g.producer._loud
    finally:
        g.producer.close(timeout=0.1)


def test_a_producer_cannot_be_built_without_saying_what_to_warm_up(tmp_path: Path) -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:9"))
    with pytest.raises(TypeError, match="warm_topics"):
        RawProducer(conf, Spool(tmp_path, 1 << 20))  # type: ignore[call-arg]
