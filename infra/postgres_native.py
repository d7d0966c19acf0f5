"""Native PostgreSQL launcher (Debian packages): its own data folder, port and socket dir inside a run dir.

``PostgresServer(run_dir).start()`` runs initdb on first use (as the ``postgres`` user when we are root, since
initdb refuses root), starts the postmaster on 127.0.0.1 with fsync off (dev/test), creates the ``mdpipe``
database and exposes a DSN. Tests create private servers with their own run dir to stop and restart them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from infra.procs import cmdline, free_port, pid_alive, port_free, read_json, stop_pid, tail, write_json
from mdpipe.logging import get_logger

__all__ = ["PostgresServer", "PostgresStartError", "find_pg_bin"]

log = get_logger(__name__)

DEFAULT_DB = "mdpipe"


class PostgresStartError(RuntimeError):
    """The server did not come up; the message carries the end of its log."""


def find_pg_bin() -> Path | None:
    """The newest PostgreSQL server bin dir ($MDPIPE_PG_BIN, else /usr/lib/postgresql/<ver>/bin), None if absent."""
    env = os.environ.get("MDPIPE_PG_BIN")
    if env:
        return Path(env) if (Path(env) / "postgres").is_file() else None
    found = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file() and bindir.parent.name.isdigit():
            found.append((int(bindir.parent.name), bindir))
    return max(found)[1] if found else None


def _as_postgres_user() -> dict[str, Any]:
    """Popen kwargs that drop to the postgres user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresStartError("running as root needs the 'postgres' user (apt-get install postgresql)") from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": pw.pw_dir}}


def _die_with_parent() -> None:
    """preexec_fn: the postmaster gets SIGINT (fast shutdown) when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


class PostgresServer:
    """One PostgreSQL cluster living in ``run_dir/postgres`` (data, sock, logs, state.json)."""

    def __init__(self, run_dir: Path | str, *, pg_bin: Path | None = None, die_with_parent: bool = False) -> None:
        self.home = Path(run_dir).resolve() / "postgres"
        self.bin = pg_bin or find_pg_bin()
        self.die_with_parent = die_with_parent
        self.data_dir = self.home / "data"
        self.sock_dir = self.home / "sock"
        self.log_path = self.home / "logs" / "postgres.log"
        self.state_path = self.home / "state.json"
        state = read_json(self.state_path)
        self.port: int = int(state.get("port", 0))
        self.pid: int = int(state.get("pid", 0))
        self.startup_s: float = float(state.get("startup_s", 0.0))
        self.timescaledb: bool = bool(state.get("timescaledb", False))
        self._proc: subprocess.Popen[bytes] | None = None

    # --- addresses and facts -------------------------------------------------------------------------------------
    def dsn_for(self, dbname: str = DEFAULT_DB) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        return self.dsn_for(DEFAULT_DB)

    @property
    def version(self) -> str:
        """Server version from ``postgres --version`` (e.g. '15.14')."""
        if self.bin is None:
            return ""
        try:
            out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
        except OSError:
            return ""
        match = re.search(r"(\d+(?:\.\d+)*)", out.stdout)
        return match.group(1) if match else ""

    def timescaledb_installed(self) -> bool:
        """The TimescaleDB extension files are installed for this server version."""
        major = self.bin.parent.name if self.bin else ""
        control = Path(f"/usr/share/postgresql/{major}/extension/timescaledb.control")
        return control.is_file() and any(Path(f"/usr/lib/postgresql/{major}/lib").glob("timescaledb*.so"))

    def info(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn,
            "port": self.port,
            "pid": self.pid,
            "version": self.version,
            "timescaledb": self.timescaledb,
            "startup_s": round(self.startup_s, 3),
            "home": str(self.home),
        }

    def is_running(self) -> bool:
        """The postmaster recorded in ``postmaster.pid`` is alive (and serves our data dir: pids get reused)."""
        pid = self._postmaster_pid()
        if pid:
            self.pid = pid
        return self._ours(pid)

    def _ours(self, pid: int) -> bool:
        return pid_alive(pid) and str(self.data_dir) in cmdline(pid)

    def healthy(self, timeout: float = 5.0) -> bool:
        """Running and accepting a query on the ``mdpipe`` database."""
        if not self.is_running():
            return False
        import psycopg

        try:
            with psycopg.connect(self.dsn_for("postgres"), connect_timeout=max(1, int(timeout))) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Start (or reuse when already running and healthy). Raises PostgresStartError with the log tail."""
        if self.bin is None:
            raise PostgresStartError("PostgreSQL server binaries missing: run `mdpipe infra install`")
        if self.is_running():
            if self.healthy():
                self._ensure_database()
                return self
            self.stop()
        t0 = time.monotonic()
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        if not self.port or not port_free(self.port):
            self.port = free_port()
        options = [
            "-c", "listen_addresses=127.0.0.1",
            "-p", str(self.port),
            "-k", str(self.sock_dir),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=300",
            "-c", "shared_buffers=128MB",
            "-c", "max_wal_size=2GB",
        ]  # fmt: skip
        if self.timescaledb_installed():
            options += ["-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off"]
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data_dir), *options],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
                **_as_postgres_user(),
            )
        self.pid = self._proc.pid
        self._save()
        self._wait_ready(t0, timeout)
        self._ensure_database()
        self.timescaledb = self._has_timescaledb()
        self.startup_s = time.monotonic() - t0
        self._save()
        log.info("postgres_started", dsn=self.dsn, pid=self.pid, startup_s=round(self.startup_s, 2))
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint), SIGKILL after ``timeout``."""
        pid = self._postmaster_pid() or self.pid
        if self._ours(pid):
            killed = stop_pid(pid, timeout=timeout, sig=signal.SIGINT)
            log.info("postgres_stopped", pid=pid, killed=killed)
        self._reap()
        self.pid = 0
        self._save()

    def kill(self) -> None:
        """Crash the server (SIGKILL to the postmaster; its children exit when they notice)."""
        pid = self._postmaster_pid() or self.pid
        if self._ours(pid):
            stop_pid(pid, timeout=0.0, sig=signal.SIGKILL)
        self._reap()
        self.pid = 0
        self._save()

    def restart(self, timeout: float = 60.0) -> PostgresServer:
        self.stop()
        return self.start(timeout)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` (if missing) and return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    # --- internals -----------------------------------------------------------------------------------------------
    def _postmaster_pid(self) -> int:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return 0

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def _prepare_dirs(self) -> None:
        for folder in (self.home, self.data_dir, self.sock_dir, self.log_path.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.log_path.touch()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.home, self.data_dir, self.sock_dir, self.log_path.parent, self.log_path):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            denied = [p for p in self.home.parents if p.exists() and not os.stat(p).st_mode & 0o001]
            if denied:
                raise PostgresStartError(f"the postgres user cannot traverse {denied[0]} (needs o+x)")

    def _initdb(self) -> None:
        cmd = [str(self.bin / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        cmd += ["--no-sync", "--locale=C"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **_as_postgres_user())
        if done.returncode != 0:
            raise PostgresStartError(f"initdb failed ({done.returncode}): {done.stdout}{done.stderr}")

    def _wait_ready(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                self._proc = None
                raise PostgresStartError(f"postgres exited during start-up; log tail:\n{tail(self.log_path, 20)}")
            if self.healthy(timeout=2):
                return
            time.sleep(0.05)
        self.stop(timeout=10)
        raise PostgresStartError(f"postgres not ready after {timeout:.0f}s; log tail:\n{tail(self.log_path, 20)}")

    def _ensure_database(self) -> None:
        self.create_database(DEFAULT_DB)

    def _has_timescaledb(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        return bool(row and row[0])

    def _save(self) -> None:
        write_json(self.state_path, self.info())
