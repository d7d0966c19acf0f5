"""Broker outages lose nothing (issue 14 item 3), against a REAL broker that goes down and comes back.

One private broker per module (the shared one is never stopped): own run dir and ports under a temp folder,
restarted on the same data dir (and port) to bring it back. It is started, stopped and killed from one long-lived
thread: it dies with the thread that started it (PDEATHSIG), so never from a short-lived worker.

Scenarios: broker down before ``mdpipe gather`` starts (the spool holds frames within 30 s); broker killed mid-run
(in-process gatherer: moved to disk after ``gather.spool_after_s``, one log line per change, metrics, replay in order
per partition); ``mdpipe gather`` SIGKILLed during the outage and restarted (its spool is replayed). The judge is the
venue's own truth and record (which events reached a connection of the gatherer), matched by body as in
``test_gatherer_sim``; never the gatherer's own counts.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ingest.spool import Spool
from mdpipe.config import Config, SimConfig, load_config
from mdpipe.partitioner import partition_for
from mdpipe.topics import ensure_topics, topic_names
from ops.verify_record import CHANNEL_OF_KIND, VenueRecord
from venue_sim.app import VenueSim
from venue_sim.record import read_record, record_path
from venue_sim.truth import read_truth

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MDPIPE = [sys.executable, "-m", "mdpipe"]
SPOOL_AFTER_S = 5.0  # gather.spool_after_s default: the tests rely on the default (no new setting passed)


class Broker:
    """A private broker driven from one long-lived thread (see module docstring)."""

    def __init__(self) -> None:
        from infra.kafka_native import KafkaBroker

        self.base = Path(tempfile.mkdtemp(prefix=f"mdpipe-private-{os.getpid()}-"))
        self.base.chmod(0o755)
        self.kafka = KafkaBroker(self.base, die_with_parent=True, fast_start=True)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-broker")

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    def start(self) -> None:
        self._thread.submit(self.kafka.start).result()

    def stop(self) -> None:
        self._thread.submit(self.kafka.stop).result()

    def kill(self) -> None:
        self._thread.submit(self.kafka.kill).result()

    async def start_async(self) -> None:
        await asyncio.wrap_future(self._thread.submit(self.kafka.start))

    def log_lines(self, *words: str, last: int = 15) -> str:
        """The last lines of the broker's log that contain any of ``words``: what a failure message shows of the
        broker's side (its folder is deleted with the fixture)."""
        path = self.kafka.log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = [ln.strip()[:300] for ln in text.splitlines() if any(w in ln for w in words)]
        return " | ".join(lines[-last:]) or "(no such line)"

    async def kill_async(self) -> None:
        await asyncio.wrap_future(self._thread.submit(self.kafka.kill))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._thread.shutdown()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    from infra.kafka_native import kafka_version

    if not kafka_version():
        pytest.skip("private brokers need the native Kafka jars (mdpipe infra install)")
    b = Broker()
    try:
        b.start()
        yield b
    finally:
        b.close()


def _config(broker: Broker) -> Config:
    broker.start()  # each test starts with the broker up (a failed test may have left it down)
    bootstrap = broker.bootstrap
    base = load_config(environ={}, use_infra_state=False)
    kafka = msgspec.structs.replace(
        base.kafka, bootstrap_servers=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", replication_factor=1
    )
    return msgspec.structs.replace(base, kafka=kafka)


def _env(tmp_path: Path, config: Config) -> dict[str, str]:
    return {
        **os.environ,
        "MDPIPE_RUN_DIR": str(tmp_path / "run"),
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
        "MDPIPE_KAFKA__TOPIC_PREFIX": config.kafka.topic_prefix,
    }


def _start_sim(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    args = ["--markets", "20", "--rate", "300", "--seed", "5", "--port", "0", "--no-auth", "--churn", "0"]
    sim = subprocess.Popen(
        [*MDPIPE, "sim", *args, "--metrics-port", "0", "--truth", str(tmp_path / "truth.bin")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert sim.stdout is not None
    urls = dict(sim.stdout.readline().split() for _ in range(2))
    return sim, urls


def _start_gather(tmp_path: Path, env: dict[str, str], urls: dict[str, str], log_name: str) -> subprocess.Popen[str]:
    log = (tmp_path / log_name).open("w")
    args = ["--id", "g1", "--no-auth", "--rest-url", urls["REST"], "--ws-url", urls["WS"], "--metrics-port", "0"]
    return subprocess.Popen(
        [*MDPIPE, "gather", *args, "--markets-per-connection", "10", "--spool-dir", str(tmp_path / "spool")],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )


def _spooled_records(spool_root: Path) -> int:
    """Records still in the spool; a segment the gatherer deletes (replayed) between listing and reading holds none."""
    total = 0
    for seg in spool_root.rglob("*.spool"):
        try:
            total += sum(1 for _ in Spool.read(seg))
        except FileNotFoundError:
            continue
    return total


def _wait(cond: Any, timeout: float, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _metric(run_dir: Path, name: str) -> float | None:
    stage = json.loads((run_dir / "stages" / "gather-g1.json").read_text())
    with urllib.request.urlopen(stage["metrics_url"], timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def missing_delivered(
    truth: Path, frames: list[Any], ih: Any, gid: str, blind: list[tuple[int, int]] = ()
) -> tuple[list[Any], int]:
    """Truth events that the venue's record says reached a connection of ``gid`` and that have no frame with the
    same body for the same market (as a multiset), except those generated inside a ``blind`` window (ns); and how
    many events were expected."""
    record = VenueRecord.build(read_record(record_path(truth)))
    have = collections.Counter((f.market, ih.body_of(f)) for f in frames if f.kind != "gap")
    missing = []
    expected = 0
    for ev in read_truth(truth):
        if ev.id in record.bad or gid not in record.delivered(CHANNEL_OF_KIND[ev.kind], ev.market, ev.id):
            continue
        if any(lo <= ev.gen_ns <= hi for lo, hi in blind):
            continue
        expected += 1
        key = (ev.market, ev.msg)
        if have[key] > 0:
            have[key] -= 1
        else:
            missing.append(ev)
    return missing, expected


def _order_mismatch(have: list[bytes], want: list[bytes], ih: Any) -> str:
    """What differs between the frames in a partition and those handed over, in a few lines (not two lists of
    thousands of frames): counts, the first position that differs and the frames around it."""
    extra, lost = set(have) - set(want), set(want) - set(have)
    i = next((j for j, (a, b) in enumerate(zip(have, want, strict=False)) if a != b), min(len(have), len(want)))

    def show(values: list[bytes]) -> list[str]:
        out = []
        for v in values[max(0, i - 2) : i + 3]:
            f = ih.decode_raw(v)
            out.append(f"{f.kind} {f.market} recv={f.recv_ns}" + (" (not handed over)" if v in extra else ""))
        return out

    return (
        f"{len(have)} frames in the topic, {len(want)} handed over; {len(lost)} handed over but absent, "
        f"{len(extra)} never handed over; first difference at {i}: topic {show(have)} / handed over {show(want)}"
    )


_State = tuple[str, bool | None, float]  # a broker_* log line: event, after_outage, wall time
MAX_BLIPS = 3  # broker_unreachable/broker_reachable pairs outside the outage a test tolerates (not one per frame)


def _check_story(states: list[_State], *, reached_first: bool, down: tuple[float, float]) -> None:
    """The broker's story in a gatherer's log, as (event, after_outage, wall time) of its ``broker_*`` lines: exactly
    one outage, right after a ``broker_unreachable`` and right before the only ``broker_reachable`` with
    ``after_outage=True``; the log ends reachable; anything else is a blip, a ``broker_unreachable`` answered by a
    ``broker_reachable`` (a metadata probe can time out on a loaded machine while nothing is acknowledged for a
    second), at most ``MAX_BLIPS``; and no ``broker_reachable`` at all while the broker was down (``down``: from
    shortly after it was stopped to when it was started again), where it would lift the hold and replay the spool
    into a dead broker."""
    story = [e for e, _, _ in states]
    assert story.count("broker_outage_spooling") == 1, states
    at = story.index("broker_outage_spooling")
    assert at > 0 and story[at - 1] == "broker_unreachable" and story[at + 1] == "broker_reachable", states
    assert states[at + 1][1] is True and [a for e, a, _ in states if e == "broker_reachable"].count(True) == 1, states
    assert story[-1] == "broker_reachable", states
    rest = story[:at] + story[at + 1 :]
    first = ["broker_reachable"] if reached_first else []
    pairs = (len(rest) - len(first)) // 2
    assert rest == first + ["broker_unreachable", "broker_reachable"] * pairs, states
    assert pairs - 1 <= MAX_BLIPS, states
    assert not [t for e, _, t in states if e == "broker_reachable" and down[0] < t < down[1]], (down, states)


def _log_states(text: str) -> list[_State]:
    """(event, after_outage, wall time) of the ``broker_*`` lines of a gatherer's key=value log."""
    out = []
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        event = fields.get("event", "")
        if event.startswith("broker_") and event != "broker_unreachable_at_start":
            wall = datetime.datetime.fromisoformat(fields["ts"].replace("Z", "+00:00")).timestamp()
            after = {"True": True, "False": False}.get(fields.get("after_outage", ""))
            out.append((event, after, wall))
    return out


def test_gather_without_a_broker_spools_within_30s_then_delivers(tmp_path: Path, broker: Broker, ih: Any) -> None:
    config = _config(broker)
    ensure_topics(config)
    raw = topic_names(config).raw["g1"]
    env = _env(tmp_path, config)
    broker.stop()
    sim, urls = _start_sim(tmp_path, env)
    gather = None
    try:
        gather = _start_gather(tmp_path, env, urls, "gather.log")
        started = time.monotonic()
        _wait(lambda: _spooled_records(tmp_path / "spool") > 100, 30, "frames in the spool directory", gather)
        spooled_after_s = time.monotonic() - started
        assert _metric(tmp_path / "run", "mdpipe_gather_broker_reachable") == 0.0
        assert (_metric(tmp_path / "run", "mdpipe_gather_broker_unreachable_seconds") or 0) >= SPOOL_AFTER_S
        time.sleep(3)
        restarted = time.time()
        broker.start()
        _wait(lambda: _spooled_records(tmp_path / "spool") == 0, 90, "the spool replayed", gather)
        _wait(lambda: _metric(tmp_path / "run", "mdpipe_gather_broker_reachable") == 1.0, 10, "reachable metric")
        time.sleep(2)
        assert _stop(gather) == 0
    finally:
        if gather is not None and gather.poll() is None:
            _stop(gather, signal.SIGKILL)
        _stop(sim)
    text = (tmp_path / "gather.log").read_text()
    assert "Traceback" not in text
    # one line per change, not per frame; never reachable before the broker was started
    _check_story(_log_states(text), reached_first=False, down=(0.0, restarted))
    assert "partition_check_passed" in text
    frames = ih.read_frames(broker.bootstrap, raw)
    missing, expected = missing_delivered(tmp_path / "truth.bin", frames, ih, "g1")
    assert expected > 2000 and missing == [], (len(missing), expected, spooled_after_s)


def test_broker_killed_mid_run_spools_and_replays_in_order(
    tmp_path: Path, broker: Broker, ih: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import REGISTRY

    caplog.set_level(logging.INFO)
    config = _config(broker)
    ensure_topics(config, extra=[f"{config.kafka.topic_prefix}raw.k1"])
    names = topic_names(config)
    topics = {"raw": f"{config.kafka.topic_prefix}raw.k1", "dlq": names.dlq, "markets": names.markets}
    truth = tmp_path / "truth.bin"
    sim = VenueSim(
        SimConfig(markets=20, rate=400.0, seed=13, churn_per_s=0.0, port=0, auth=False, truth_path=str(truth))
    )
    sent: list[tuple[bytes, bytes]] = []  # (key, value) of every raw frame in the order the gatherer handed it over
    marks: dict[str, Any] = {}

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"gatherer": "k1"})

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(broker.bootstrap, sim, tmp_path / "spool", topics=topics, gid="k1")
        send = g._send

        def recording_send(topic: str, key: bytes | None, value: bytes) -> None:
            if topic == topics["raw"]:
                sent.append((key or b"", value))
            send(topic, key, value)

        g._send = recording_send

        class RecordingHeld(list):  # frames the gatherer holds for release (ingest.producer.RawProducer.held)
            def append(self, item: Any) -> None:
                if item[0] == topics["raw"]:
                    sent.append((item[1] or b"", item[2]))
                super().append(item)

        g.producer.held = g._held = RecordingHeld()

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 20 and all(c.up for c in g.connections), 30, "subscribe")
            await ih.wait_for(lambda: g.producer.acked > 200, 30, "first acks")
            await asyncio.sleep(1.5)
            assert gauge("mdpipe_gather_broker_reachable") == 1.0
            await broker.kill_async()
            killed = time.monotonic()
            marks["killed_wall"] = time.time()
            await ih.wait_for(lambda: g.watch.state.outage, 20, "the outage noticed")
            marks["moved_after_s"] = time.monotonic() - killed
            assert g.producer.spooling and g.producer.hold and len(g.producer.spool) > 0
            # frames held for release (gather.linger_ms) are on their way to the spool: count them with it (the
            # producer's spooled count is in frames; the spool's length in records, a bundle being one)
            spooled, sent_before = g.producer.spooled + len(g.producer.held), len(sent)
            await asyncio.sleep(6)
            # librdkafka counts its pending requests too: a handful, never the frames
            assert g.producer.queued < 50, "nothing piles up in librdkafka's memory during the outage"
            on_disk = g.producer.spooled + len(g.producer.held) - spooled
            assert on_disk >= len(sent) - sent_before > 1000, "every new frame is on disk"
            assert gauge("mdpipe_gather_broker_reachable") == 0.0
            assert (gauge("mdpipe_gather_broker_unreachable_seconds") or 0) >= SPOOL_AFTER_S
            assert gauge("mdpipe_gather_spooling") == 1.0
            marks["spooled"] = len(g.producer.spool)
            marks["restarted_wall"] = time.time()
            await broker.start_async()
            # frames keep flowing (held, then released once per gather.linger_ms), so librdkafka's queue is never
            # empty for long: drained = not spooling, nothing on disk, no backlog in memory
            await ih.wait_for(
                lambda: not g.producer.spooling and len(g.producer.spool) == 0 and g.producer.queued < 50,
                90,
                "spool drained",
            )
            await asyncio.sleep(2)
            assert gauge("mdpipe_gather_broker_reachable") == 1.0
            assert gauge("mdpipe_gather_broker_unreachable_seconds") == 0.0

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    assert marks["moved_after_s"] < SPOOL_AFTER_S + 5 and marks["spooled"] > 1000, marks
    assert g.producer.spool.dropped == 0
    # reachable at start, one outage, reachable after it (the acknowledgements before the kill may still be counted
    # for a moment after it: hence the half second)
    states = [
        (r.getMessage(), getattr(r, "kv", {}).get("after_outage"), r.created)
        for r in caplog.records
        if r.name.startswith("ingest") and r.getMessage().startswith("broker_")
    ]
    _check_story(states, reached_first=True, down=(marks["killed_wall"] + 0.5, marks["restarted_wall"]))
    got = [(k, f) for k, v in ih.read_topic(broker.bootstrap, topics["raw"]) for f in ih.frames_of(v)]
    # every frame handed over arrived, and in each partition in the order the gatherer handed them over (copies of a
    # frame moved while in flight may repeat it: dedup absorbs exact copies, so the order of first copies counts)
    parts = config.kafka.partitions
    for p in range(parts):
        want = [v for k, v in sent if partition_for(k, parts) == p]
        seen: set[bytes] = set()
        have = [v for k, v in got if partition_for(k or b"", parts) == p and not (v in seen or seen.add(v))]
        assert have == want, (
            f"partition {p}: " + _order_mismatch(have, want, ih) + f"; {len(g.producer.spool)} in the spool"
            f"; broker log: {broker.log_lines(topics['raw'], 'runcat')}"
        )
    frames = [ih.decode_raw(v) for _, v in got]
    missing, expected = missing_delivered(truth, frames, ih, "k1")
    assert expected > 3000 and missing == []


def test_gather_sigkilled_during_outage_replays_its_spool_after_restart(
    tmp_path: Path, broker: Broker, ih: Any
) -> None:
    config = _config(broker)
    ensure_topics(config)
    raw = topic_names(config).raw["g1"]
    env = _env(tmp_path, config)
    sim, urls = _start_sim(tmp_path, env)
    blind: list[tuple[int, int]] = []
    gather = restarted = None
    try:
        gather = _start_gather(tmp_path, env, urls, "gather1.log")
        _wait(lambda: len(ih.read_topic(broker.bootstrap, raw, timeout=5)) > 500, 60, "frames in the topic", gather)
        broker.kill()
        _wait(lambda: _spooled_records(tmp_path / "spool") > 500, 30, "frames in the spool", gather)
        time.sleep(4)
        gather.send_signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        gather.wait(30)
        # delivered to the dying process but possibly not yet read from its socket or handed to the spool
        blind.append((killed_ns - 2_000_000_000, killed_ns + 1_000_000_000))
        before = _spooled_records(tmp_path / "spool")
        restarted = _start_gather(tmp_path, env, urls, "gather2.log")
        _wait(lambda: _spooled_records(tmp_path / "spool") > before + 300, 40, "the restart spools", restarted)
        broker.start()
        _wait(lambda: _spooled_records(tmp_path / "spool") == 0, 90, "the spool replayed", restarted)
        time.sleep(2)
        assert _stop(restarted) == 0
    finally:
        for proc in (gather, restarted):
            if proc is not None and proc.poll() is None:
                _stop(proc, signal.SIGKILL)
        _stop(sim)
    text = (tmp_path / "gather2.log").read_text()
    assert "broker_unreachable_at_start" in text and "partition_check_passed" in text
    frames = ih.read_frames(broker.bootstrap, raw)
    missing, expected = missing_delivered(tmp_path / "truth.bin", frames, ih, "g1", blind)
    seen = [(ev.id, ev.kind, ev.market, round((ev.gen_ns - killed_ns) / 1e9, 3)) for ev in missing[:10]]
    assert expected > 3000 and missing == [], (
        f"{len(missing)} of {expected} missing (id, kind, market, s after the kill): {seen}"
    )
