"""The emulator's Prometheus figures include what it did to its clients (behaviours, venue-level faults)."""

from __future__ import annotations

from pathlib import Path

from mdpipe.config import SimConfig
from venue_sim.app import VenueSim
from venue_sim.load import Event
from venue_sim.metrics import METRIC_NAMES, SimCollector


def test_collector_exports_every_named_family_with_behaviour_counts(tmp_path: Path) -> None:
    section = SimConfig(
        markets=20, rate=500.0, port=0, auth=False, truth_path=str(tmp_path / "t.msgpack"), pause_per_s=1.0
    )
    sim = VenueSim(section)
    sim.generating = True
    out: list[Event] = []
    sim.generator.bad_delta(out, "nan")
    sim.generator.lifecycle_now(out, "deactivate", 3)
    sim._publish(out)
    families = {f.name: f for f in SimCollector(sim).collect()}
    assert {n.removesuffix("_total") for n in METRIC_NAMES} <= set(families)
    kinds = {s.labels["kind"]: s.value for s in families["mdpipe_sim_behaviour_events"].samples}
    assert kinds["bad_numbers"] == 1 and kinds["paused"] == 1 and kinds["redelivered"] == 0
    assert families["mdpipe_sim_record_records"].samples[0].value >= 2
    sim.record.close()  # type: ignore[union-attr]
