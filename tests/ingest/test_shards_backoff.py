"""Sans-I/O pieces of the gatherer: shard plan, backoff, bounded metric labels (the market registry:
test_registry_neutral.py; a venue's request signing: tests/venues/<name>/)."""

from __future__ import annotations

import random

from ingest.backoff import backoff
from ingest.registry import BoundedLabels
from ingest.shards import ShardPlan


def test_shard_plan_fills_connections_and_reuses_freed_room() -> None:
    plan = ShardPlan(3)
    placed = plan.assign([f"M{i}" for i in range(7)])
    assert {k: len(v) for k, v in placed.items()} == {0: 3, 1: 3, 2: 1}
    assert plan.assign(["M0"]) == {}
    assert plan.release(["M1", "X"]) == {0: ["M1"]}
    assert plan.assign(["N1", "N2"]) == {0: ["N1"], 2: ["N2"]}
    assert plan.connections == 3


def test_backoff_grows_with_jitter_and_caps() -> None:
    delays = backoff(0.5, 4.0, rng=random.Random(1))
    values = [next(delays) for _ in range(8)]
    assert 0.25 <= values[0] <= 0.5
    assert all(v <= 4.0 for v in values) and values[-1] >= 2.0
    assert len(set(values)) == len(values)


def test_bounded_labels() -> None:
    labels = BoundedLabels(2)
    assert labels.label("a") == ("a", True)
    assert labels.label("a") == ("a", False)
    assert labels.label("") == ("none", True)
    assert labels.label("b") == ("other", True)
    assert labels.label("b") == ("other", False)
    assert labels.label("c") == ("other", True)
