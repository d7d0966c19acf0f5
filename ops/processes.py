"""Child processes of a pipeline run (emulator, gatherers, dedup, sink): start with logs, stop, kill.

Used by `make demo`, the end-to-end tests and `make bench-e2e`. Each child is `python -m mdpipe ...`
with its settings passed as ``MDPIPE_<SECTION>__<KEY>`` variables, its output in a log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Child"]


class Child:
    """One `mdpipe` subcommand running in its own process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mdpipe", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_line(self, needle: str, timeout: float) -> str:
        """Wait until the child's log has a line containing ``needle``; return that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for line in self.log_path.read_text(errors="replace").splitlines():
                    if needle in line:
                        return line
            except OSError:
                pass
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited ({self.returncode}) before printing {needle!r}; see {self.log_path}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not print {needle!r} within {timeout:.0f}s; see {self.log_path}")

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive and self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful, flushes), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
