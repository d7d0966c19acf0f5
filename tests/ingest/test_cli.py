"""``mdpipe gather`` as a process: partition check, health endpoint, frames in raw.<id>, SIGTERM flushes, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mdpipe.config import Config
from mdpipe.topics import ensure_topics, topic_names

pytestmark = pytest.mark.integration


def test_gather_help_lists_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "mdpipe", "gather", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in (
        "--id",
        "--rest-url",
        "--ws-url",
        "--key-id",
        "--private-key",
        "--no-auth",
        "--markets-per-connection",
        "--metrics-port",
    ):
        assert flag in out.stdout


def test_gather_process_records_frames_and_stops_cleanly(tmp_path: Path, mdpipe_config: Config, ih: Any) -> None:
    ensure_topics(mdpipe_config)
    env = {
        **os.environ,
        "MDPIPE_RUN_DIR": str(tmp_path / "run"),
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": mdpipe_config.kafka.bootstrap_servers,
        "MDPIPE_KAFKA__TOPIC_PREFIX": mdpipe_config.kafka.topic_prefix,
    }
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdpipe",
            "sim",
            "--markets",
            "30",
            "--rate",
            "300",
            "--port",
            "0",
            "--no-auth",
            "--churn",
            "0",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert sim.stdout is not None
        urls = dict(sim.stdout.readline().split() for _ in range(2))
        gather = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mdpipe",
                "gather",
                "--id",
                "g1",
                "--no-auth",
                "--rest-url",
                urls["REST"],
                "--ws-url",
                urls["WS"],
                "--markets-per-connection",
                "10",
                "--metrics-port",
                "0",
                "--spool-dir",
                str(tmp_path / "spool"),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        stage = tmp_path / "run" / "stages" / "gather-g1.json"
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and not healthy:
            time.sleep(0.5)
            assert gather.poll() is None, gather.stderr.read() if gather.stderr else ""
            if stage.exists():
                record = json.loads(stage.read_text())
                try:
                    with urllib.request.urlopen(record["health_url"], timeout=5) as r:
                        healthy = r.status == 200
                except OSError:
                    pass
        assert healthy
        time.sleep(2)
        with urllib.request.urlopen(record["metrics_url"], timeout=5) as r:
            text = r.read().decode()
        assert 'mdpipe_gather_connections_up{gatherer="g1"} 3.0' in text
        assert "mdpipe_gather_frames_total" in text
        gather.send_signal(signal.SIGTERM)
        assert gather.wait(60) == 0
        stderr = gather.stderr.read() if gather.stderr else ""
        assert "gatherer_stopped" in stderr
    finally:
        sim.terminate()
        sim.wait(30)
    frames = ih.read_frames(mdpipe_config.kafka.bootstrap_servers, topic_names(mdpipe_config).raw["g1"])
    assert {f.market for f in frames if f.kind == "snapshot"} and len({f.conn for f in frames}) == 3


def test_gather_refuses_to_start_without_its_topics(tmp_path: Path, kafka_bootstrap: str) -> None:
    env = {
        **os.environ,
        "MDPIPE_RUN_DIR": str(tmp_path / "run"),
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MDPIPE_KAFKA__TOPIC_PREFIX": f"missing{os.getpid()}.",
    }
    out = subprocess.run(
        [sys.executable, "-m", "mdpipe", "gather", "--id", "g1", "--no-auth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("mdpipe:")]
    assert len(lines) == 1 and "raw.g1" in lines[0]
