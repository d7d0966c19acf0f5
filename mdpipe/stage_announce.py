"""Where each running stage serves its metrics: one announcement file per stage under ``.run/stages``.

A long-running command (gatherer, dedup worker, sink, emulator) writes ``<stage>.json`` when its exporter starts
(:func:`mdpipe.metrics.start_metrics_server`), so that `mdpipe status`, `make demo` and the pipeline runner find
every stage without flags. The file names the process, and process ids are recycled (a few tens of thousands on a
typical Linux host): a file left by a process that died without removing it (SIGKILL, a crash) may one day name a
new, unrelated process under the same id. A record therefore also carries the process's start token (its start
time since boot, from ``/proc``) and is listed only while the process holding that id is the one that wrote it.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path

__all__ = ["announce", "process_start_token", "registered_stages", "stages_dir"]

# A record written before start tokens existed carries only its wall-clock write time; it may belong to the live
# process only if it was written after that process started (the boot time is known to the second).
_LEGACY_START_SLACK_S = 1.0


def stages_dir() -> Path:
    from mdpipe.config import run_dir

    return run_dir() / "stages"


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields from the third on (after the command name, which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_token(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: the same pid and token are the same process.

    None where ``/proc`` is not available (not Linux) or the process is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])  # field 22 of stat(5): starttime


def _process_started_wall(token: int) -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + token / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    return None


def _is_the_writer(record: dict[str, object]) -> bool:
    """True when the process that wrote ``record`` is still running (not another one under a recycled id)."""
    pid = int(str(record["pid"]))
    os.kill(pid, 0)  # OSError when no process has the id
    token = process_start_token(pid)
    if token is None:  # no /proc: the id is all there is to go by
        return True
    if "start_token" in record:
        return int(str(record["start_token"])) == token
    started = _process_started_wall(token)
    return started is None or float(str(record.get("started", 0))) >= started - _LEGACY_START_SLACK_S


def announce(stage: str, metrics_url: str, health_url: str, bind: str) -> Path:
    """Write this process's announcement for ``stage`` and remove it again when the process exits normally."""
    folder = stages_dir()
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record: dict[str, object] = {
        "stage": stage,
        "pid": pid,
        "metrics_url": metrics_url,
        "health_url": health_url,
        "bind": bind,
        "started": time.time(),
    }
    token = process_start_token(pid)
    if token is not None:
        record["start_token"] = token
    path = folder / f"{stage}.json"
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)  # readers never see half a record
    atexit.register(_withdraw, path, pid)
    return path


def _withdraw(path: Path, pid: int) -> None:
    """Remove ``path`` if it is still this process's announcement (a restarted stage may have replaced it)."""
    try:
        if int(json.loads(path.read_text())["pid"]) == pid:
            path.unlink()
    except (OSError, ValueError, KeyError):
        pass


def registered_stages() -> list[dict[str, object]]:
    """Stages that announced themselves and whose process is still running."""
    out = []
    for path in sorted(stages_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            if not _is_the_writer(record):
                continue
        except (OSError, ValueError, KeyError):
            continue
        out.append(record)
    return out
