"""The dedup benchmark's paced case: one worker fed at a pipeline's moderate rate instead of draining a backlog.

At saturation every fixed cost of a batch, a wake-up or a commit is spread over thousands of frames; a worker in a
pipeline gets frames as the gatherers send them, in small compressed batches, and pays those costs far more often.
:func:`paced_run` starts a `mdpipe dedup` worker on fresh topics, lets :mod:`bench.dedup.feed` send the pipeline's
mix at ``rate`` events/s (three gatherers), and measures over a window after a warm-up: the worker's CPU per frame
(``/proc/<pid>/stat``, every thread; and split into the Python thread and librdkafka's threads), and the dedup hop's
latency, from the broker's append time of the winning copy on its raw topic to the append time of its event (every
topic uses ``LogAppendTime``), for the events first sent inside the window; ``feeder_latency_ms`` is the hop before
(copy sent -> appended), the feeder's and the broker's share, which a loaded machine stretches.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.dedup.feed import GATHERERS

__all__ = ["ProcCpu", "create_topics", "delete_topics", "hop_latencies_ms", "paced_run", "worker_env"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcCpu:
    """CPU seconds of a process from /proc (Linux): all threads, and per thread name (librdkafka names its threads
    ``rdk:*``, RocksDB ``rocksdb:*``; the interpreter's threads keep the process name)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @staticmethod
    def _ticks(stat: str) -> tuple[str, float]:
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        return name, (int(fields[11]) + int(fields[12])) / _TICK

    def total(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            return self._ticks(f.read())[1]

    def threads(self) -> dict[str, float]:
        """CPU seconds by thread group: ``python`` (the interpreter's threads), ``librdkafka``, ``rocksdb``."""
        out: dict[str, float] = {}
        folder = f"/proc/{self.pid}/task"
        for tid in os.listdir(folder):
            try:
                with open(f"{folder}/{tid}/stat") as f:
                    name, cpu = self._ticks(f.read())
            except OSError:
                continue
            group = "librdkafka" if name.startswith("rdk:") else "rocksdb" if name.startswith("rocksdb") else "python"
            out[group] = out.get(group, 0.0) + cpu
        return out


def broker_pid() -> int | None:
    """The local broker's process id when `mdpipe infra up` started it (``.run/infra.json``), else None."""
    from mdpipe.config import run_dir

    try:
        pid = int(json.loads((run_dir() / "infra.json").read_text())["kafka"]["pid"])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def worker_env(bootstrap: str, prefix: str, partitions: int, run_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MDPIPE_KAFKA__TOPIC_PREFIX": prefix,
        "MDPIPE_KAFKA__PARTITIONS": str(partitions),
        "MDPIPE_GATHER__IDS": json.dumps(list(GATHERERS)),
        "MDPIPE_RUN_DIR": str(run_dir),
    }


def create_topics(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    """raw.g1..g3, events and dlq under ``prefix``, with ``LogAppendTime``: the broker stamps when each record
    arrived, which times the dedup hop (raw append -> event append) apart from the feeder's own."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"{prefix}raw.{g}" for g in GATHERERS] + [f"{prefix}events", f"{prefix}dlq"]
    topics = [NewTopic(t, partitions, 1, config={"message.timestamp.type": "LogAppendTime"}) for t in names]
    for fut in admin.create_topics(topics).values():
        fut.result()
    return names


def delete_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for fut in admin.delete_topics(mine, operation_timeout=30).values() if mine else ():
        try:
            fut.result()
        except Exception as exc:  # cleanup only
            print(f"cleanup: {exc}", file=sys.stderr)


def _frames_in(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mdpipe_dedup_frames_in"))


def _read_all(bootstrap: str, topic: str, handle: Callable[[Any], None]) -> None:
    """Call ``handle(msg)`` for every record of ``topic`` up to its current end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in meta.partitions:
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            if high:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        done: set[int] = set()
        deadline = time.monotonic() + 120
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 1.0):
                if msg.error() is not None:
                    continue
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
                handle(msg)
    finally:
        consumer.close()


def hop_latencies_ms(bootstrap: str, prefix: str, from_ns: int, to_ns: int) -> tuple[list[float], list[float]]:
    """For the events whose first copy was sent in ``[from_ns, to_ns)``: (send -> raw topic append of that copy,
    raw topic append -> event append), from the broker's append times (every topic here uses ``LogAppendTime``)."""
    from schemas import decode_event, decode_raw
    from schemas.raw_record import frames_of

    appended: dict[tuple[str, str], int] = {}

    def raw(msg: Any) -> None:
        for value in frames_of(msg.value()):  # a record of one frame, or a bundle's frames
            frame = decode_raw(value)  # type: ignore[arg-type]
            if from_ns <= frame.recv_ns < to_ns:
                appended[frame.gatherer, frame.event_key] = msg.timestamp()[1]

    for gid in GATHERERS:
        _read_all(bootstrap, f"{prefix}raw.{gid}", raw)
    upstream: list[float] = []
    dedup: list[float] = []

    def event(msg: Any) -> None:
        ev = decode_event(msg.value())
        at = appended.get((ev.gatherer, ev.event_key))
        if at is not None:
            upstream.append(at - ev.recv_ns / 1e6)
            dedup.append(msg.timestamp()[1] - at)

    _read_all(bootstrap, f"{prefix}events", event)
    return upstream, dedup


def _wait_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"dedup worker: no {needle!r} within {timeout_s}s:\n{path.read_text(errors='replace')[-3000:]}")


def paced_run(
    bootstrap: str,
    partitions: int,
    workdir: Path,
    rate: float,
    window_s: float,
    warmup_s: float,
    markets: int,
    worker_tree: Path | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One worker fed at ``rate`` venue events/s for ``warmup_s + window_s``; figures over the window. With
    ``profile``, py-spy samples the worker's Python threads holding the GIL over the window into that file
    (collapsed stacks), or, for a ``.data`` file, ``perf record -g`` samples every thread, native code included."""
    prefix = f"bench-dedup-paced-{uuid.uuid4().hex[:8]}."
    create_topics(bootstrap, prefix, partitions)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "worker.log"
    env = worker_env(bootstrap, prefix, partitions, workdir / "run")
    if worker_tree is not None:
        env["PYTHONPATH"] = str(worker_tree)
    cmd = [sys.executable, "-m", "mdpipe", "dedup", "--app-id", f"{prefix}app", "--workdir", str(workdir / "state")]
    cmd += ["--metrics-port", "0"]
    try:
        with log_path.open("wb") as out:
            worker = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=worker_tree)
        try:
            _wait_line(log_path, "partitions_assigned", worker, 90)
            stage = json.loads((workdir / "run" / "stages" / "dedup-state.json").read_text())
            metrics_url = str(stage["metrics_url"])
            seconds = warmup_s + window_s
            feeder = subprocess.Popen(
                [sys.executable, "-m", "bench.dedup.feed", bootstrap, prefix, str(rate), str(seconds),
                 "--markets", str(markets)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            cpu = ProcCpu(worker.pid)
            bpid = broker_pid()
            broker = ProcCpu(bpid) if bpid is not None else None
            time.sleep(warmup_s)
            spy = None
            if profile is not None and profile.suffix == ".data":  # perf: every thread, native code included
                spy = subprocess.Popen(
                    ["perf", "record", "-F", "499", "-g", "-p", str(worker.pid), "-o", str(profile), "--",
                     "sleep", str(window_s)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            elif profile is not None:
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(worker.pid), "--gil",
                     "--nonblocking", "-r", "250", "-d", str(int(window_s)), "-f", "raw", "-o", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            b0 = broker.total() if broker is not None else 0.0
            t0, c0, th0, f0, ns0 = time.monotonic(), cpu.total(), cpu.threads(), _frames_in(metrics_url), time.time_ns()
            time.sleep(window_s)
            t1, c1, th1, f1, ns1 = time.monotonic(), cpu.total(), cpu.threads(), _frames_in(metrics_url), time.time_ns()
            b1 = broker.total() if broker is not None else 0.0
            if spy is not None:
                spy.wait(60)
            fed_out, _ = feeder.communicate(timeout=120)
            if feeder.returncode != 0:
                raise RuntimeError(f"feeder failed ({feeder.returncode})")
            fed = int(fed_out.split("frames=")[1].split()[0])
            deadline = time.monotonic() + 120
            while _frames_in(metrics_url) < fed and time.monotonic() < deadline:
                time.sleep(0.5)
            done = _frames_in(metrics_url)
            if done < fed:
                raise RuntimeError(f"paced run: the worker read {done:.0f} of {fed} frames")
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        upstream, latencies = hop_latencies_ms(bootstrap, prefix, ns0, ns1)
        latencies.sort()
        upstream.sort()
    finally:
        delete_topics(bootstrap, prefix)
    frames, cpu_s = f1 - f0, c1 - c0
    if not latencies or frames <= 0 or cpu_s <= 0:
        raise RuntimeError(f"paced run measured nothing: frames={frames} cpu_s={cpu_s} events={len(latencies)}")
    threads = {k: th1.get(k, 0.0) - th0.get(k, 0.0) for k in th1}
    q = statistics.quantiles(latencies, n=100)
    qu = statistics.quantiles(upstream, n=100)
    return {
        "rate": rate,
        "frames_s": frames / (t1 - t0),
        "frames_per_cpu_s": frames / cpu_s,
        "us_per_frame": cpu_s / frames * 1e6,
        "core_share": cpu_s / (t1 - t0),
        "us_per_frame_by_thread": {k: round(v / frames * 1e6, 2) for k, v in sorted(threads.items())},
        # the broker serves the feeder too (the same at a given rate): differences between runs are the worker's
        "broker_us_per_frame": round((b1 - b0) / frames * 1e6, 2) if broker is not None else None,
        "latency_ms": {"p50": round(q[49], 1), "p99": round(q[98], 1), "max": round(latencies[-1], 1)},
        "feeder_latency_ms": {"p50": round(qu[49], 1), "p99": round(qu[98], 1)},
    }
