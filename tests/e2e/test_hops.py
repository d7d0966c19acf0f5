"""A tiny whole-pipeline run with the instruments of `make bench-e2e`: the hop table and the CPU table are there and
sane (every hop measured and >= 0, hops adding up to the venue->committed trip, every process busy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdpipe.config import Config, SimConfig
from ops.hops import HOPS, TOTAL
from ops.pipeline_run import FaultPlan
from tests.e2e.finished_run import finished_run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


def test_hop_and_cpu_tables_of_a_short_run(mdpipe_config: Config, tmp_path: Path) -> None:
    run = finished_run(
        mdpipe_config,
        tmp_path,
        "mdpipe_e2e",
        markets=200,
        rate=300.0,
        duration_s=12.0,
        gatherers=3,
        seed=5,
        faults=FaultPlan.none(),
        venue=SimConfig(),  # the emulator's defaults: none of the demo's behaviours
        drain_timeout_s=120.0,
        hop_trace=True,
        measure_cpu=True,
    )
    report = run.verify(warmup_s=3.0)
    verdict = {k: v for k, v in report.items() if k not in ("hops_ms", "hop_stats", "cpu")}
    assert report["clean"] and report["missing"] == 0 and report["duplicated"] == 0, verdict

    hops = report["hops_ms"]
    assert list(hops) == [*HOPS, TOTAL]
    measured = report["latency_ms"]["count"]  # events after the warm-up with a row (what venue->database covers)
    stats = report["hop_stats"]
    assert stats["untraced"] == 0 and stats["unstamped"] == 0 and stats["undecodable"] == 0
    for name, d in hops.items():
        assert d["count"] == measured, name  # every hop of every event measured, the same events as venue->database
        assert 0 <= d["p50"] <= d["p99"] <= d["max"], (name, d)
    # per event the hops add up to venue->committed exactly and none is negative, so no hop's quantile exceeds the
    # total's (the sum of the hops' medians need not be near the total's median: under a backlog it is not)
    total = hops[TOTAL]["p50"]
    for h in HOPS:
        for q in ("p50", "p99", "max"):
            assert hops[h][q] <= hops[TOTAL][q] + 0.1, (h, q, hops[h], hops[TOTAL])
    assert sum(hops[h]["max"] for h in HOPS) >= hops[TOTAL]["max"] - 0.1, hops
    # the row is loaded (loaded_at) inside the transaction that commits it: venue->database ends a little earlier
    venue_db = report["latency_ms"]
    assert venue_db["p50"] - 2 <= total <= venue_db["p50"] + 500, (venue_db, hops[TOTAL])

    cpu = run.cpu_table("start", "end")
    stages = ["sim", "gather-g1", "gather-g2", "gather-g3", "dedup-1", "sink"]
    assert set(stages) <= set(cpu)
    window = run.cpu_samples["end"].venue_events - run.cpu_samples["start"].venue_events
    # the marks bracket the generation (the emulator falls behind its rate on a loaded machine: not checked here)
    assert window > 0.5 * run.options.rate * run.options.duration_s
    for name, row in cpu.items():
        assert row["cpu_s"] is not None and (row["cpu_s"] >= 0 or name == "other"), (name, row)
    for name in (*stages, *(n for n in ("broker", "postgres") if n in cpu)):
        assert cpu[name]["cpu_s"] > 0 and cpu[name]["us_per_event"] > 0, (name, cpu[name])  # type: ignore[operator]
    wall_s = (run.cpu_samples["end"].at_ns - run.cpu_samples["start"].at_ns) / 1e9
    busy = sum(r["cpu_s"] for n, r in cpu.items() if n != "steal")  # type: ignore[misc]
    assert busy <= (os.cpu_count() or 1) * wall_s * 1.02  # the named processes and "other" = the machine's busy time
