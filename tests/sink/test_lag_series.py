"""The sink exports consumer lag only for the partitions it owns: a rebalance that takes partitions away removes
their series (a stale value would be summed with the new owner's on the dashboard)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer

from bench.sink.data import make_events
from mdpipe.kafka import consumer_config


def _lag_partitions(topic: str) -> dict[int, float]:
    from prometheus_client import REGISTRY

    return {
        int(s.labels["partition"]): s.value
        for metric in REGISTRY.collect()
        if metric.name == "mdpipe_sink_consumer_lag_records"
        for s in metric.samples
        if s.labels.get("topic") == topic
    }


def test_revoked_partitions_leave_no_lag_series(sink_env: Any) -> None:
    events_topic = sink_env.names.events
    sink_env.produce(make_events(600, markets=60, seed=3))
    loader, thread, _ = sink_env.start_loader_thread("g-stale", batch_rows=100)
    other = Consumer(consumer_config(sink_env.config.kafka, "g-stale", **{"partition_assignment_strategy": "range"}))
    try:
        deadline = time.monotonic() + 60
        while set(_lag_partitions(events_topic)) != set(range(6)):
            assert time.monotonic() < deadline, f"no lag series for every partition: {_lag_partitions(events_topic)}"
            time.sleep(0.1)
        other.subscribe([events_topic])  # a second member: the range assignor moves half the partitions to it
        while not other.assignment():
            assert time.monotonic() < deadline, "the second member got no partitions"
            other.poll(0.1)
        taken = {tp.partition for tp in other.assignment()}
        while {tp.partition for tp in loader._assignment if tp.topic == events_topic} != set(range(6)) - taken:
            assert time.monotonic() < deadline, "the sink did not take its share back"
            other.poll(0.1)
        owned = set(range(6)) - taken
        settle = time.monotonic() + 5  # the sink refreshes its lag gauges every 2 s
        while time.monotonic() < settle:
            other.poll(0.1)
        assert set(_lag_partitions(events_topic)) == owned, f"owned {owned}, exported {_lag_partitions(events_topic)}"
    finally:
        loader.stop()
        thread.join(60)
        other.close()
