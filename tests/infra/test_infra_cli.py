"""`mdpipe infra up|status|down` on a private run dir: idempotent up, status exit codes, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import manager
from infra.kafka_native import kafka_version
from infra.postgres_native import find_pg_bin
from infra.procs import pid_alive
from mdpipe.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not kafka_version() or find_pg_bin() is None, reason="needs `mdpipe infra install`"),
]


@pytest.fixture
def private_run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="mdpipe-cli-"))
    base.chmod(0o755)
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(base))
    yield base
    manager.down(base)
    shutil.rmtree(base, ignore_errors=True)


def test_up_twice_status_down(private_run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "status", "--json"]) == 1  # nothing running yet
    assert json.loads(capsys.readouterr().out)["healthy"] is False

    assert main(["infra", "up"]) == 0
    first = json.loads((private_run_dir / "infra.json").read_text())
    assert first["bootstrap_servers"].startswith("127.0.0.1:")
    assert first["dsn"].startswith("postgresql://postgres@127.0.0.1:")
    assert first["kafka_version"] == kafka_version()
    assert first["kafka_startup_s"] > 0
    assert main(["infra", "up"]) == 0  # reuses the healthy servers
    second = json.loads((private_run_dir / "infra.json").read_text())
    assert second["kafka"]["reused"] and second["postgres"]["reused"]
    assert second["kafka"]["pid"] == first["kafka"]["pid"]
    assert second["postgres"]["pid"] == first["postgres"]["pid"]
    capsys.readouterr()

    assert main(["infra", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["healthy"] is True
    assert status["bootstrap_servers"] == first["bootstrap_servers"]
    assert status["dsn"] == first["dsn"]
    assert status["postgres_version"] == first["postgres_version"]
    assert status["timescaledb"] is False or status["timescaledb"] is True

    assert main(["infra", "down"]) == 0
    pids = [first["kafka"]["pid"], first["postgres"]["pid"]]
    assert not any(pid_alive(p) for p in pids)
    assert not (private_run_dir / "infra.json").exists()
    assert main(["infra", "status"]) == 1
    assert os.environ["MDPIPE_RUN_DIR"] == str(private_run_dir)
