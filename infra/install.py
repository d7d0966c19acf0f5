"""`mdpipe infra install`: Kafka broker jars via Maven (skipped when the version stamp matches), the
PostgreSQL server via apt when its binaries are missing, and promtool (Debian package ``prometheus``) so the alert
rules' unit tests run. Idempotent; `make setup` calls it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from infra.kafka_native import find_java, kafka_libs_dir, kafka_version
from infra.postgres_native import find_pg_bin
from mdpipe.logging import get_logger

__all__ = ["InstallError", "install_kafka", "install_postgres", "install_promtool", "pom_path"]

log = get_logger(__name__)


class InstallError(RuntimeError):
    """A prerequisite could not be installed; the message says what to do."""


def pom_path() -> Path:
    return Path(__file__).resolve().parent / "kafka" / "pom.xml"


def _stamp_text() -> str:
    return hashlib.sha256(pom_path().read_bytes()).hexdigest()


def install_kafka(force: bool = False) -> str:
    """Resolve the broker jars into the libs dir; return the Kafka version. No-op when the stamp matches."""
    libs = kafka_libs_dir()
    stamp = libs / ".stamp"
    if not force and stamp.is_file() and stamp.read_text().strip() == _stamp_text() and kafka_version(libs):
        log.info("kafka_jars_present", version=kafka_version(libs), libs=str(libs))
        return kafka_version(libs)
    mvn = shutil.which("mvn")
    if mvn is None:
        _apt_install(["maven"], why="Maven (mvn) fetches the Kafka jars")
        mvn = shutil.which("mvn") or "mvn"
    if not Path(find_java()).is_file() and shutil.which("java") is None:
        _apt_install(["openjdk-17-jre-headless"], why="the broker needs Java 17+")
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom_path()), "dependency:copy-dependencies", "-DincludeScope=runtime"]
    cmd.append(f"-DoutputDirectory={tmp}")
    log.info("kafka_jars_resolving", pom=str(pom_path()))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InstallError(f"maven failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    if not kafka_version(tmp):
        raise InstallError(f"maven ran but no kafka_2.13 jar landed in {tmp}")
    shutil.rmtree(libs, ignore_errors=True)
    os.replace(tmp, libs)
    stamp.write_text(_stamp_text() + "\n")
    log.info("kafka_jars_installed", version=kafka_version(libs), jars=len(list(libs.glob("*.jar"))))
    return kafka_version(libs)


def install_postgres() -> Path:
    """apt-get install postgresql when no server binaries exist; return the bin dir."""
    found = find_pg_bin()
    if found is not None:
        log.info("postgres_present", bin=str(found))
        return found
    _apt_install(["postgresql"], why="PostgreSQL server binaries not found")
    found = find_pg_bin()
    if found is None:
        raise InstallError("postgresql installed but no server binaries under /usr/lib/postgresql/*/bin")
    return found


def install_promtool() -> str | None:
    """apt-get install prometheus (for promtool) when missing; optional: a failure is logged, never raised.

    Only the ``promtool`` binary is used (tests of infra/prometheus/alerts.yml); no Prometheus server is started.
    """
    found = shutil.which("promtool")
    if found is not None:
        log.info("promtool_present", path=found)
        return found
    try:
        _apt_install(["prometheus"], why="promtool checks and unit-tests the alert rules")
    except InstallError as exc:
        log.warning("promtool_unavailable", error=str(exc)[-300:])
        return None
    return shutil.which("promtool")


def _apt_install(packages: list[str], why: str) -> None:
    """apt-get update + install ``packages`` (as root, else via sudo); InstallError says what to do otherwise."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise InstallError(f"{why} and there is no apt-get: install {' '.join(packages)} yourself")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*sudo, apt, "update"], [*sudo, apt, "install", "-y", "--no-install-recommends", *packages]):
        log.info("apt", cmd=" ".join(cmd), why=why)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise InstallError(f"{' '.join(cmd)} failed: {(done.stdout + done.stderr)[-2000:]}")
