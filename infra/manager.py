"""The shared dev/test infrastructure of a checkout: one native broker + one PostgreSQL in `.run/`,
described by `.run/infra.json` (read by mdpipe.config to fill bootstrap servers and DSN)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from infra.kafka_native import KafkaBroker
from infra.postgres_native import PostgresServer
from infra.procs import read_json, write_json
from mdpipe.config import run_dir

__all__ = [
    "COMPOSE_BOOTSTRAP",
    "COMPOSE_DSN",
    "COMPOSE_FILE",
    "compose_command",
    "docker_engine",
    "down",
    "down_docker",
    "infra_file",
    "status",
    "up",
    "up_docker",
]

# Host addresses published by infra/compose.yaml (tests/infra/test_compose.py keeps them in sync).
COMPOSE_FILE = Path(__file__).resolve().parent / "compose.yaml"
COMPOSE_BOOTSTRAP = "127.0.0.1:19092"
COMPOSE_DSN = "postgresql://postgres:mdpipe@127.0.0.1:15432/mdpipe"


def infra_file(base: Path | None = None) -> Path:
    return (base or run_dir()) / "infra.json"


def up(base: Path | None = None) -> dict[str, Any]:
    """Start (or reuse) the broker and the database; write and return the infra.json record."""
    base = base or run_dir()
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    broker = KafkaBroker(base)
    reused_kafka = broker.healthy()
    broker.start()
    pg = PostgresServer(base)
    reused_pg = pg.healthy()
    pg.start()
    record = {
        "mode": "native",
        "bootstrap_servers": broker.bootstrap_servers,
        "dsn": pg.dsn,
        "kafka": {**broker.info(), "reused": reused_kafka},
        "postgres": {**pg.info(), "reused": reused_pg},
        "kafka_version": broker.version,
        "postgres_version": pg.info()["version"],
        "timescaledb": pg.timescaledb,
        "kafka_startup_s": round(broker.startup_s, 3),
        "up_s": round(time.monotonic() - t0, 3),
        "started": time.time(),
    }
    write_json(infra_file(base), record)
    return record


def down(base: Path | None = None) -> dict[str, Any]:
    """Stop both servers (data stays for the next `up`); mark infra.json as stopped."""
    base = base or run_dir()
    broker, pg = KafkaBroker(base), PostgresServer(base)
    was = {"kafka": broker.is_running(), "postgres": pg.is_running()}
    broker.stop()
    pg.stop()
    path = infra_file(base)
    if path.exists():
        path.unlink()
    return {"stopped": was, "kafka_running": broker.is_running(), "postgres_running": pg.is_running()}


def compose_command(*args: str) -> list[str]:
    """`docker compose` on infra/compose.yaml with the default venue's deployment file, as the Makefile passes it:
    the file refuses any command (whatever the profile) without MDPIPE_VENUE."""
    import venues

    env_file = Path(venues.__file__).resolve().parent / venues.default_name() / "deploy" / "compose.env"
    flags = ["--env-file", str(env_file)] if env_file.is_file() else []
    return ["docker", "compose", "-f", str(COMPOSE_FILE), *flags, *args]


def _compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(compose_command(*args), capture_output=True, text=True, timeout=timeout, check=False)


def up_docker(base: Path | None = None) -> dict[str, Any]:
    """`docker compose up -d --wait` (Redpanda + Console + TimescaleDB); record the addresses in infra.json."""
    base = base or run_dir()
    t0 = time.monotonic()
    done = _compose("up", "-d", "--wait")
    if done.returncode != 0:
        raise RuntimeError(f"docker compose up failed: {(done.stdout + done.stderr)[-2000:]}")
    record = {
        "mode": "docker",
        "bootstrap_servers": COMPOSE_BOOTSTRAP,
        "dsn": COMPOSE_DSN,
        "timescaledb": True,
        "up_s": round(time.monotonic() - t0, 3),
        "started": time.time(),
    }
    write_json(infra_file(base), record)
    return record


def down_docker(base: Path | None = None) -> dict[str, Any]:
    """`docker compose down` (volumes kept); forget infra.json."""
    done = _compose("down")
    path = infra_file(base or run_dir())
    if path.exists():
        path.unlink()
    return {"mode": "docker", "stopped": done.returncode == 0}


def docker_engine() -> bool:
    """A Docker engine answers (`docker info`)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _compose_status() -> dict[str, Any]:
    """Services of infra/compose.yaml as `docker compose ps` reports them (when a Docker engine runs)."""
    cmd = compose_command("ps", "--format", "{{.Service}} {{.State}}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {"mode": "docker", "healthy": False, "error": "docker compose did not answer"}
    states = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    healthy = done.returncode == 0 and states.get("redpanda") == "running" and states.get("timescaledb") == "running"
    return {
        "mode": "docker",
        "services": states,
        "bootstrap_servers": COMPOSE_BOOTSTRAP,
        "dsn": COMPOSE_DSN,
        "healthy": healthy,
    }


def status(base: Path | None = None) -> dict[str, Any]:
    """Addresses, versions, TimescaleDB, health of the native infra (or of the compose stack)."""
    base = base or run_dir()
    recorded = read_json(infra_file(base))
    broker, pg = KafkaBroker(base), PostgresServer(base)
    if recorded.get("mode") == "docker" or (
        not recorded and not broker.is_running() and not pg.is_running() and docker_engine()
    ):
        return _compose_status()
    kafka_ok, pg_ok = broker.healthy(), pg.healthy()
    return {
        "mode": "native",
        "bootstrap_servers": broker.bootstrap_servers if broker.port else "",
        "dsn": pg.dsn if pg.port else "",
        "kafka_version": broker.version,
        "kafka_running": broker.is_running(),
        "kafka_healthy": kafka_ok,
        "kafka_startup_s": round(broker.startup_s, 3),
        "postgres_version": pg.version,
        "postgres_running": pg.is_running(),
        "postgres_healthy": pg_ok,
        "timescaledb": pg.timescaledb,
        "healthy": kafka_ok and pg_ok,
    }
