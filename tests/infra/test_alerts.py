"""Alert rules (infra/prometheus/alerts.yml) checked and unit-tested with promtool when it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROM = Path(__file__).resolve().parents[2] / "infra" / "prometheus"
GRAFANA = Path(__file__).resolve().parents[2] / "infra" / "grafana"
promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian package 'prometheus')")
def test_rules_are_valid_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_rules_cover_the_old_designs_scaling_triggers() -> None:
    text = (PROM / "alerts.yml").read_text()
    for needle in (
        "mdpipe_gather_frames_total",  # message rate per gatherer
        "process_resident_memory_bytes",  # gatherer memory
        "mdpipe_dedup_sync_lag_seconds",  # sync lag > 30 s
        "> 30",
        "mdpipe_sink_batch_seconds_bucket",  # database latency
    ):
        assert needle in text


def test_dashboard_queries_only_metrics_the_stages_export() -> None:
    import re

    from dedup_stream.metrics import METRIC_NAMES

    dashboard = json.loads((GRAFANA / "mdpipe.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    known = set(METRIC_NAMES) | {n + "_total" for n in METRIC_NAMES}
    for module in ("ingest.metrics", "sink.metrics"):
        source = Path(__import__(module, fromlist=["x"]).__file__).read_text()  # type: ignore[arg-type]
        for name in re.findall(r'"(mdpipe_[a-z_]+)"', source):
            known |= {name, name + "_total", name + "_bucket", name + "_sum", name + "_count"}
    known.add("process_resident_memory_bytes")
    for expr in exprs:
        for name in re.findall(r"\b(mdpipe_[a-z_]+|process_[a-z_]+)", expr):
            assert name in known, f"{name} in {expr!r} is not exported by any stage"
