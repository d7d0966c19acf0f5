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


def _alert_groups() -> dict[str, list[str]]:
    """Alert names per rule group of alerts.yml (read as text: the checkout has no YAML parser)."""
    import re

    groups: dict[str, list[str]] = {}
    current = ""
    for line in (PROM / "alerts.yml").read_text().splitlines():
        group = re.match(r"\s+- name: (\S+)", line)
        alert = re.match(r"\s+- alert: (\S+)", line)
        if group:
            current = group.group(1)
            groups[current] = []
        elif alert:
            groups[current].append(alert.group(1))
    return groups


def _promtool_cases() -> dict[str, set[str]]:
    """alertname -> {"firing", "silent"}: the kinds of expectations alerts_test.yml has for it."""
    import re

    cases: dict[str, set[str]] = {}
    lines = (PROM / "alerts_test.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        name = re.match(r"\s+alertname: (\w+)", line)
        if name:
            expected = lines[i + 1].strip()
            kind = "silent" if expected == "exp_alerts: []" else "firing"
            assert expected.startswith("exp_alerts:"), f"line {i + 2}: {expected!r}"
            cases.setdefault(name.group(1), set()).add(kind)
    return cases


def test_every_availability_and_flow_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    groups = _alert_groups()
    new = groups["mdpipe-availability"] + groups["mdpipe-flow"]
    assert {"MdpipeStageDown", "DedupStalled", "SinkStalled", "PipelineNotWriting", "RedundancyLost"} <= set(new)
    assert {"MdpipeNoGathererUp", "MdpipeNoDedupUp", "MdpipeNoSinkUp", "DedupConsumerLagHigh"} <= set(new)
    cases = _promtool_cases()
    for alert in new:
        assert cases.get(alert) == {"firing", "silent"}, f"{alert}: promtool cases {cases.get(alert)}"


def test_dead_stage_rules_cover_every_scraped_job() -> None:
    import re

    jobs = re.findall(r"^\s*- job_name: (\S+)", (PROM / "prometheus.yml").read_text(), re.MULTILINE)
    rules = (PROM / "alerts.yml").read_text()
    assert jobs == ["mdpipe-gather", "mdpipe-dedup", "mdpipe-sink"]
    for job in jobs:
        assert f'absent(up{{job="{job}"}} == 1)' in rules
        assert job.removeprefix("mdpipe-") in re.search(r"up\{job=~\"mdpipe-\(([a-z|]+)\)\"\} == 0", rules).group(1)  # type: ignore[union-attr]


def test_scrape_targets_are_the_stages_default_metrics_ports() -> None:
    """prometheus.yml names the ports the stages bind when nothing is configured (they used to be random)."""
    import re

    from mdpipe.config import Config, gatherer_metrics_port

    text = (PROM / "prometheus.yml").read_text()
    targets = {
        job: re.findall(r"127\.0\.0\.1:(\d+)", body)
        for job, body in re.findall(r"job_name: (mdpipe-\w+)\n\s+static_configs: (\[.*\])", text)
    }
    config = Config()
    assert targets["mdpipe-gather"] == [str(gatherer_metrics_port(config.gather, gid)) for gid in config.gather.ids]
    assert targets["mdpipe-dedup"] == [str(config.dedup.metrics_port)]
    assert targets["mdpipe-sink"] == [str(config.sink.metrics_port)]
    assert all(port != 0 for port in (config.gather.metrics_port, config.dedup.metrics_port, config.sim.metrics_port))
