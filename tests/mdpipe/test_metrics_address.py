"""Where each stage serves /metrics and /healthz: metrics_host (bind address) and fixed default ports."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from mdpipe.cli import main
from mdpipe.config import Config, ConfigError, GatherConfig, gatherer_metrics_port, load_config
from mdpipe.metrics import local_url_host, start_metrics_server
from mdpipe.stage_announce import registered_stages


def test_every_stage_has_a_fixed_default_port_and_a_local_bind_address() -> None:
    config = Config()
    assert (config.gather.metrics_port, config.dedup.metrics_port) == (9101, 9111)
    assert (config.sink.metrics_port, config.sim.metrics_port) == (9121, 9131)
    for section in (config.gather, config.dedup, config.sink, config.sim):
        assert section.metrics_host == "127.0.0.1"


def test_each_gatherer_of_a_host_gets_its_own_port() -> None:
    gather = GatherConfig(ids=["g1", "g2", "g3"])
    assert [gatherer_metrics_port(gather, gid) for gid in ("g1", "g2", "g3")] == [9101, 9102, 9103]
    assert gatherer_metrics_port(GatherConfig(ids=["a", "b"], metrics_port=9500), "b") == 9501
    assert gatherer_metrics_port(GatherConfig(ids=["g1"], metrics_port=0), "g7") == 0  # any free port
    with pytest.raises(ConfigError, match=r"gather.metrics_port: gatherer 'g7' is not in gather.ids \(g1, g2\)"):
        gatherer_metrics_port(GatherConfig(ids=["g1", "g2"]), "g7")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MDPIPE_DEDUP__METRICS_HOST": " "}, "config setting dedup.metrics_host (environment): must be an address"),
        ({"MDPIPE_SINK__METRICS_PORT": "70000"}, "config setting sink.metrics_port (environment): must be 0"),
        ({"MDPIPE_GATHER__METRICS_PORT": "65535"}, "config setting gather.metrics_port (environment): 65535 + one"),
    ],
)
def test_bad_metrics_addresses_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(environ=env, use_infra_state=False)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_config_show_lists_the_bind_address_of_every_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for section in ("GATHER", "DEDUP", "SINK", "SIM"):
        monkeypatch.delenv(f"MDPIPE_{section}__METRICS_PORT", raising=False)
    monkeypatch.setenv("MDPIPE_CONFIG", "/dev/null")
    monkeypatch.setenv("MDPIPE_DEDUP__METRICS_HOST", "0.0.0.0")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    sections = {block.split("]", 1)[0].lstrip("["): block for block in out.split("\n\n") if block.startswith("[")}
    for name, port in (("gather", 9101), ("dedup", 9111), ("sink", 9121), ("sim", 9131)):
        assert f"metrics_port = {port}" in sections[name]
        assert "metrics_host = " in sections[name]
    assert 'metrics_host = "0.0.0.0"' in sections["dedup"] and 'metrics_host = "127.0.0.1"' in sections["sink"]


def test_local_url_host() -> None:
    assert local_url_host("0.0.0.0") == "127.0.0.1"
    assert local_url_host("::") == "[::1]"
    assert local_url_host("10.1.2.3") == "10.1.2.3"
    assert local_url_host("fd00::5") == "[fd00::5]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_server_binds_the_configured_address_and_announces_a_reachable_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    port = _free_port()
    server = start_metrics_server(port, stage="sink-x", host="0.0.0.0", setting="sink.metrics_port")
    try:
        assert server.port == port and server._server.server_address[0] == "0.0.0.0"
        (record,) = [r for r in registered_stages() if r["stage"] == "sink-x"]
        assert record["metrics_url"] == f"http://127.0.0.1:{port}/metrics" and record["bind"] == f"0.0.0.0:{port}"
        with urllib.request.urlopen(str(record["health_url"]), timeout=5) as resp:
            assert resp.status == 200
    finally:
        server.close()


def test_ipv6_wildcard_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    try:
        server = start_metrics_server(0, stage="dedup-v6", host="::1", setting="dedup.metrics_port")
    except ConfigError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    try:
        (record,) = [r for r in registered_stages() if r["stage"] == "dedup-v6"]
        with urllib.request.urlopen(str(record["metrics_url"]), timeout=5) as resp:
            assert resp.status == 200 and record["metrics_url"].startswith("http://[::1]:")
    finally:
        server.close()


def test_a_port_in_use_is_a_one_line_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            start_metrics_server(port, host="127.0.0.1", setting="dedup.metrics_port")
    text = str(err.value)
    assert text.startswith(f"config setting dedup.metrics_port: cannot serve metrics on 127.0.0.1:{port} (")
    assert "--metrics-port" in text and "dedup.metrics_host" in text and "\n" not in text


def _sim(tmp_path: Path, **env: str) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    run_env.update(MDPIPE_RUN_DIR=str(tmp_path), MDPIPE_CONFIG="/dev/null", **env)
    cmd = [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--markets", "5", "--rate", "10"]
    out = subprocess.run([*cmd, "--duration", "0.5"], env=run_env, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stderr


def test_a_stage_binds_its_sections_metrics_host_and_port(tmp_path: Path) -> None:
    """Its announcement names the bind address while it runs (and is removed when it exits)."""
    import json
    import os
    import subprocess
    import sys
    import time

    port = _free_port()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    run_env.update(
        MDPIPE_RUN_DIR=str(tmp_path),
        MDPIPE_CONFIG="/dev/null",
        MDPIPE_SIM__METRICS_HOST="0.0.0.0",
        MDPIPE_SIM__METRICS_PORT=str(port),
    )
    cmd = [sys.executable, "-m", "mdpipe", "sim", "--no-auth", "--port", "0", "--markets", "5", "--rate", "10"]
    sim = subprocess.Popen([*cmd, "--duration", "30"], env=run_env, stderr=subprocess.PIPE, text=True)
    announced = tmp_path / "stages" / "sim.json"
    try:
        deadline = time.monotonic() + 30
        while not announced.exists() and sim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        record = json.loads(announced.read_text())
    finally:
        sim.terminate()
        _, stderr = sim.communicate(timeout=30)
    assert record["bind"] == f"0.0.0.0:{port}" and record["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    assert sim.returncode == 0, stderr
    assert not announced.exists()


def test_a_stage_whose_metrics_port_is_taken_stops_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = _sim(tmp_path, MDPIPE_SIM__METRICS_PORT=str(port))
    assert status == 2
    lines = [line for line in stderr.splitlines() if line.startswith("mdpipe:")]
    assert len(lines) == 1 and f"sim.metrics_port: cannot serve metrics on 127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in stderr


def test_runs_that_share_a_host_give_their_stages_free_metrics_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Demos, end-to-end tests and benchmarks (PipelineRun) and replays run next to a pipeline holding the fixed
    ports: their stages take free ports (and announce them in .run/stages)."""
    import argparse

    from ops import replay_cli
    from ops.pipeline_run import PipelineRun, RunOptions

    env = PipelineRun(Config(), RunOptions())._env()
    assert {env[f"MDPIPE_{s}__METRICS_PORT"] for s in ("GATHER", "DEDUP", "SINK", "SIM")} == {"0"}
    commands: list[list[str]] = []
    monkeypatch.setattr(replay_cli, "_run_command", lambda argv, config: commands.append(argv) or 0)
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    args = argparse.Namespace(
        what="dedup",
        from_ts=1,
        to_ts=2,
        id="x",
        idle_s=1.0,
        no_load=False,
        keep_internal_topics=True,
        from_archive=None,
    )
    assert replay_cli.run(args, Config()) == 0
    assert [argv[0] for argv in commands] == ["dedup", "sink"]
    for argv in commands:
        assert argv[argv.index("--metrics-port") + 1] == "0"
