"""Stage announcements (.run/stages): a file never points a reader at a process that did not write it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdpipe.metrics import start_metrics_server
from mdpipe.stage_announce import process_start_token, registered_stages

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start tokens come from /proc")


def _write(folder: Path, name: str, **record: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"stage": name, "metrics_url": "", "health_url": "", **record}))


def test_a_file_left_under_a_recycled_process_id_is_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage killed without removing its file, whose id now belongs to another process: that process's own
    announcement is the one listed (the pipeline runner looks stages up by id and took the stale port)."""
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    token = process_start_token(os.getpid())
    assert token is not None
    _write(tmp_path / "stages", "sink-old", pid=os.getpid(), start_token=token - 1, started=time.time() - 86400)
    server = start_metrics_server(0, stage="dedup-live")
    try:
        listed = {str(r["stage"]): r for r in registered_stages()}
        assert sorted(listed) == ["dedup-live"]
        assert listed["dedup-live"]["start_token"] == token
    finally:
        server.close()


def test_a_file_from_before_start_tokens_is_judged_by_its_write_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    _write(tmp_path / "stages", "gather-before", pid=os.getpid(), started=time.time() - 10 * 86400)
    _write(tmp_path / "stages", "gather-since", pid=os.getpid(), started=time.time())
    assert [r["stage"] for r in registered_stages()] == ["gather-since"]


def test_a_file_of_a_process_that_is_gone_is_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write(tmp_path / "stages", "sim-gone", pid=int(gone.stdout), started=time.time())
    assert registered_stages() == []


def _stage_process(run_dir: Path, then: str) -> subprocess.CompletedProcess[str]:
    """A process that announces stage ``sink-x`` under ``run_dir``, runs ``then`` and exits normally."""
    code = (
        "from mdpipe.metrics import start_metrics_server\n"
        "from mdpipe.stage_announce import stages_dir\n"
        "server = start_metrics_server(0, stage='sink-x')\n" + then
    )
    env = {**os.environ, "MDPIPE_RUN_DIR": str(run_dir)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_a_stage_that_exits_normally_removes_its_announcement(tmp_path: Path) -> None:
    done = _stage_process(tmp_path, "print(sorted(p.name for p in stages_dir().iterdir()))\n")
    assert done.stdout.strip() == "['sink-x.json']"  # written while it ran (no temporary file left beside it)
    assert list((tmp_path / "stages").iterdir()) == []


def test_a_stage_leaves_a_newer_announcement_of_its_name_alone(tmp_path: Path) -> None:
    """A stage restarted under the same name before the old process finished exiting keeps its file."""
    _stage_process(
        tmp_path,
        "import json, os\n"
        "path = stages_dir() / 'sink-x.json'\n"
        "path.write_text(json.dumps({'stage': 'sink-x', 'pid': os.getpid() + 1}))\n",
    )
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["sink-x.json"]
