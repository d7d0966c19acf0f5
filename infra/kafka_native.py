"""Native single-node Apache Kafka (KRaft combined mode) launcher: jars from `.cache/kafka/libs`, state in a run dir.

``KafkaBroker(run_dir).start()`` formats storage on first use, picks free ports (keeping the previous ones on a
restart when they are still free, so clients reconnect), starts ``kafka.Kafka`` and waits until it serves metadata.
Tests create private brokers with their own run dir to stop and restart them (outage tests).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.procs import cmdline, free_port, pid_alive, port_free, read_json, stop_pid, tail, write_json
from mdpipe.config import cache_dir
from mdpipe.logging import get_logger

__all__ = ["KafkaBroker", "KafkaStartError", "find_java", "kafka_libs_dir", "kafka_tool_command", "kafka_version"]

log = get_logger(__name__)

MAIN_CLASS = "kafka.Kafka"
READY_LINE = "Kafka Server started"
DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")


class KafkaStartError(RuntimeError):
    """The broker did not come up; the message carries the end of its log."""


def kafka_libs_dir() -> Path:
    """Where `mdpipe infra install` puts the broker jars ($MDPIPE_KAFKA_LIBS, else kafka/libs in
    mdpipe.config.cache_dir(): .cache/ of a checkout, the per-user cache folder for a regular install)."""
    env = os.environ.get("MDPIPE_KAFKA_LIBS")
    return Path(env) if env else cache_dir() / "kafka" / "libs"


def kafka_version(libs: Path | None = None) -> str:
    """The Kafka version of the installed jars ('' when not installed)."""
    for jar in sorted((libs or kafka_libs_dir()).glob("kafka_2.13-*.jar")):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return ""


def find_java() -> str:
    """The java binary: $JAVA_HOME, else Debian's OpenJDK 17, else `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    for candidate in ([Path(home)] if home else []) + [DEFAULT_JAVA_HOME]:
        java = candidate / "bin" / "java"
        if java.is_file():
            return str(java)
    return "java"


def kafka_tool_command(main_class: str, *args: str, heap_mb: int = 512) -> list[str]:
    """A java command line running a Kafka tool from the installed jars, e.g. for benchmarks:
    ``kafka_tool_command("org.apache.kafka.tools.ProducerPerformance", "--topic", "t", ...)``."""
    config = Path(__file__).resolve().parent / "kafka" / "log4j2-tools.properties"
    return [
        find_java(),
        f"-Xmx{heap_mb}m",
        f"-Dlog4j2.configurationFile={config}",
        "-cp",
        str(kafka_libs_dir() / "*"),
        main_class,
        *args,
    ]


def _cluster_id() -> str:
    """A Kafka Uuid as StorageTool prints it: unpadded URL-safe base64 of 16 random bytes, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (test-owned brokers)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class KafkaBroker:
    """One KRaft broker+controller node living in ``run_dir/kafka`` (data, logs, properties, state.json)."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        libs_dir: Path | None = None,
        java: str | None = None,
        heap_mb: int = 512,
        die_with_parent: bool = False,
        fast_start: bool = False,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(run_dir).resolve() / "kafka"
        self.libs = libs_dir or kafka_libs_dir()
        self.java = java or find_java()
        self.heap_mb = heap_mb
        self.die_with_parent = die_with_parent
        self.fast_start = fast_start  # C1-only JIT + serial GC: ~35% faster start on a loaded 2-core box, slower peak
        self.overrides = dict(overrides or {})
        self.data_dir = self.home / "data"
        self.log_path = self.home / "logs" / "server.log"
        self.props_path = self.home / "server.properties"
        self.state_path = self.home / "state.json"
        state = read_json(self.state_path)
        self.port: int = int(state.get("port", 0))
        self.controller_port: int = int(state.get("controller_port", 0))
        self.pid: int = int(state.get("pid", 0))
        self.startup_s: float = float(state.get("startup_s", 0.0))
        self._proc: subprocess.Popen[bytes] | None = None

    # --- addresses and facts -------------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def version(self) -> str:
        return kafka_version(self.libs)

    def info(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "port": self.port,
            "controller_port": self.controller_port,
            "pid": self.pid,
            "version": self.version,
            "startup_s": round(self.startup_s, 3),
            "home": str(self.home),
        }

    def is_running(self) -> bool:
        """The recorded broker process is alive (and is really our broker, not a recycled pid)."""
        return pid_alive(self.pid) and MAIN_CLASS in cmdline(self.pid) and str(self.props_path) in cmdline(self.pid)

    def healthy(self, timeout: float = 5.0) -> bool:
        """Running and answering metadata requests with at least one broker."""
        if not self.is_running():
            return False
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
            meta = admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return bool(meta.brokers)

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> KafkaBroker:
        """Start (or reuse when already running and healthy). Raises KafkaStartError with the log tail."""
        if self.is_running():
            if self.healthy():
                return self
            self.stop()
        if not self.version:
            raise KafkaStartError(f"Kafka jars missing in {self.libs}: run `mdpipe infra install`")
        try:
            return self._launch(timeout)
        except KafkaStartError as exc:
            if "Address already in use" not in str(exc):
                raise
            log.warning("kafka_port_taken_retrying", port=self.port, controller_port=self.controller_port)
            self.port = self.controller_port = 0  # lost a race for the free port: pick new ones once
            return self._launch(timeout)

    def _launch(self, timeout: float) -> KafkaBroker:
        self._choose_ports()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.props_path.write_text(self._properties())
        t0 = time.monotonic()
        if not (self.data_dir / "meta.properties").is_file():
            self._format()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [*self._java_cmd(), MAIN_CLASS, str(self.props_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self.pid = self._proc.pid
        self._save()
        self._wait_ready(t0, offset, timeout)
        self.startup_s = time.monotonic() - t0
        self._save()
        log.info("kafka_started", bootstrap=self.bootstrap_servers, pid=self.pid, startup_s=round(self.startup_s, 2))
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``); leaves data for the next start."""
        if self.pid and (self.is_running() or (self._proc and self._proc.poll() is None)):
            killed = stop_pid(self.pid, timeout=timeout)
            log.info("kafka_stopped", pid=self.pid, killed=killed)
        self._reap()
        self.pid = 0
        self._save()

    def kill(self) -> None:
        """Crash the broker (SIGKILL), as an outage test wants."""
        if self.pid and self.is_running():
            stop_pid(self.pid, timeout=0.0, sig=signal.SIGKILL)
        self._reap()
        self.pid = 0
        self._save()

    def restart(self, timeout: float = 120.0) -> KafkaBroker:
        self.stop()
        return self.start(timeout)

    # --- internals -----------------------------------------------------------------------------------------------
    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def _choose_ports(self) -> None:
        if not self.port or not port_free(self.port):
            self.port = free_port()
        if not self.controller_port or self.controller_port == self.port or not port_free(self.controller_port):
            self.controller_port = free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()

    def _java_cmd(self) -> list[str]:
        config = Path(__file__).resolve().parent / "kafka" / "log4j2.properties"
        if self.fast_start:
            gc = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        else:
            gc = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"]
        return [
            self.java,
            f"-Xms{min(256, self.heap_mb)}m",
            f"-Xmx{self.heap_mb}m",
            "-server",
            *gc,
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp",
            str(self.libs / "*"),
        ]

    def _properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # after a crash (kill) the restarted node must wait for its old registration's session to expire
            # before it may register again: 9 s by default, 2 s here (outage tests kill and restart brokers)
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            "num.io.threads": "4",
            "num.network.threads": "2",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            **self.overrides,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format(self) -> None:
        cmd = [*self._java_cmd(), "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(self.props_path)]
        cmd.append("--ignore-formatted")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise KafkaStartError(f"kafka storage format failed ({done.returncode}): {done.stdout}{done.stderr}")

    def _wait_ready(self, t0: float, offset: int, timeout: float) -> None:
        deadline = t0 + timeout
        seen: Callable[[], bool] = lambda: READY_LINE in _read_from(self.log_path, offset)  # noqa: E731
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                self._proc = None
                text = _read_from(self.log_path, offset)
                hint = " (Address already in use)" if "Address already in use" in text else ""
                raise KafkaStartError(f"kafka exited during start-up{hint}; log tail:\n{tail(self.log_path, 30)}")
            if seen() and self.healthy(timeout=5):
                return
            time.sleep(0.1)
        self.stop(timeout=10)
        raise KafkaStartError(f"kafka not ready after {timeout:.0f}s; log tail:\n{tail(self.log_path, 30)}")

    def _save(self) -> None:
        write_json(self.state_path, {**self.info(), "props": str(self.props_path)})


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""
