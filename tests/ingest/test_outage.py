"""Outage logic without a broker: BrokerState decisions (property-tested), BrokerWatch driving a real producer whose
broker is a closed port (probe results and the clock are the test's), spool order after a purge, fsync cadence."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.outage import OUTAGE, REACHABLE, UNREACHABLE, BrokerState, BrokerWatch
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import ConfigError, KafkaConfig
from mdpipe.kafka import producer_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _producer(spool_dir: Path, queue_max: int = 1000) -> RawProducer:
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    conf["log_level"] = 0
    return RawProducer(conf, Spool(spool_dir, 1 << 24), queue_max=queue_max, warm_topics={})


def _spooled_values(spool_dir: Path) -> list[bytes]:
    spool = Spool(spool_dir, 1 << 24)
    return [v for seg in spool.segments() for _, _, v in Spool.read(seg)]


# -- BrokerState -------------------------------------------------------------------------------------------------------
def test_state_outage_after_threshold_counted_from_last_answer() -> None:
    s = BrokerState(5.0, now=0.0)
    assert s.observe(True, 1.0) == [REACHABLE]
    assert s.observe(True, 2.0) == []
    assert s.observe(False, 3.0) == [UNREACHABLE]
    assert s.tick(6.9) == [] and not s.outage
    assert s.unreachable_s(6.9) == pytest.approx(4.9)
    assert s.tick(7.0) == [OUTAGE] and s.outage
    assert s.tick(60.0) == []  # once per outage
    assert s.observe(True, 61.0) == [REACHABLE] and not s.outage and s.unreachable_s(61.0) == 0.0


def test_state_never_reached_counts_from_start() -> None:
    s = BrokerState(5.0, now=100.0)
    assert s.tick(200.0) == []  # no evidence yet: nothing decided
    assert s.observe(False, 101.0) == [UNREACHABLE]
    assert s.observe(False, 105.0) == [OUTAGE]
    assert s.unreachable_s(110.0) == pytest.approx(10.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 4.0), st.sampled_from([True, False, None])), max_size=60))
def test_state_properties(steps: list[tuple[float, bool | None]]) -> None:
    """Against a plain model: one REACHABLE per way back, one UNREACHABLE per way down, one OUTAGE per unreachable
    period that lasted spool_after_s since the last answer; an outage only while unreachable."""
    s = BrokerState(5.0, now=0.0)
    now = 0.0
    last_ok: float | None = None
    reachable: bool | None = None
    outage = False
    for dt, ok in steps:
        now += dt
        changes = s.tick(now) if ok is None else s.observe(ok, now)
        want = []
        if ok is True:
            last_ok = now
            if reachable is not True:
                want.append(REACHABLE)
            reachable, outage = True, False
        else:
            if ok is False and reachable is not False:
                want.append(UNREACHABLE)
                reachable = False
            since = last_ok if last_ok is not None else 0.0
            if reachable is False and not outage and now - since >= 5.0:
                want.append(OUTAGE)
                outage = True
        assert changes == want
        assert s.outage == outage and s.reachable == reachable
        assert not s.outage or (s.reachable is False and s.unreachable_s(now) >= 5.0)


# -- RawProducer + Spool ----------------------------------------------------------------------------------------------
def test_close_puts_what_librdkafka_held_ahead_of_the_spool(tmp_path: Path) -> None:
    """A full memory queue spilled v10..v49 to the spool while v0..v9 sat in librdkafka: the next run must replay
    v0..v49 in that order (old code appended v0..v9 after v49)."""
    producer = _producer(tmp_path, queue_max=10)
    for i in range(50):
        producer.send("raw.g1", b"M", f"v{i}".encode())
    assert producer.spooling and len(producer.spool) == 40
    producer.close(timeout=0.5)
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(50)]


def test_divert_moves_librdkafka_queue_to_disk_in_order_and_hold_keeps_it_there(tmp_path: Path) -> None:
    producer = _producer(tmp_path)
    for i in range(20):
        producer.send("raw.g1", f"M{i % 3}".encode(), f"v{i}".encode())
    assert producer.queued >= 20 and len(producer.spool) == 0
    assert producer.divert() == 20
    assert producer.queued < 5 and producer.spooling  # (librdkafka also counts its pending requests)
    for i in range(20, 25):
        producer.send("raw.g1", f"M{i % 3}".encode(), f"v{i}".encode())
    producer.hold = True
    producer.service()
    assert producer.queued < 5, "held: nothing goes back into memory"
    # a crash now (no close) keeps everything, oldest first
    producer.spool.flush()
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(25)]
    producer.close(timeout=0.2)
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(25)]


def test_prepend_sorts_before_everything_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=60)
    for i in range(5):
        spool.append("t", b"k", f"new{i}".encode())
    assert spool.prepend([("t", b"k", b"old0"), ("t", b"", b"old1")]) == 2
    assert spool.prepend([("t", b"k", b"older")]) == 1
    spool.close()
    again = Spool(tmp_path, 1 << 20)
    assert len(again) == 8
    got = []
    while (taken := again.take_oldest()) is not None:
        got += [v for _, _, v in taken[1]]
        again.release(taken[0], len(taken[1]))
    assert got == [b"older", b"old0", b"old1"] + [f"new{i}".encode() for i in range(5)]
    again.append("t", b"k", b"after")  # numbering goes on after the prepended (negative) segments
    again.close()
    assert _spooled_values(tmp_path) == [b"after"]


def test_prepend_counts_what_a_full_spool_cannot_keep(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    assert spool.prepend([("t", b"k", b"x" * 30) for _ in range(5)]) == 2
    assert spool.dropped == 3 and len(spool) == 2


def test_sync_job_fsyncs_what_was_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, 1 << 20)
    assert spool.sync_job() is None
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    spool.append("t", b"k", b"v")
    job = spool.sync_job()
    assert job is not None
    assert job() >= 0.0
    assert len(synced) == 2  # the segment, and the directory (a segment was created)
    assert spool.sync_job() is None
    spool.append("t", b"k", b"w")
    job = spool.sync_job()
    assert job is not None
    job()
    assert len(synced) == 3
    assert [v for _, _, v in Spool.read(spool.segments()[0])] == [b"v", b"w"]


# -- BrokerWatch ------------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(producer: RawProducer, clock: _Clock, **kw: Any) -> tuple[BrokerWatch, list[bool]]:
    answers = [False]  # what the probe says (the last one repeats)
    producer.probe = lambda topic, timeout: answers[-1]  # type: ignore[method-assign]
    kw.setdefault("probe_interval_s", 0.0)
    watch = BrokerWatch(producer, "w1", probe_topic="raw.g1", spool_after_s=5.0, fsync_s=1.0, clock=clock, **kw)
    return watch, answers


def test_watch_diverts_after_spool_after_s_and_resumes_when_back(tmp_path: Path) -> None:
    producer = _producer(tmp_path)
    clock = _Clock()
    watch, answers = _watch(producer, clock)
    assert producer.hold, "nothing replayed before the broker answered once"

    async def run() -> None:
        for i in range(10):
            producer.send("raw.g1", b"M", f"v{i}".encode())
        await watch.step()
        clock.now += 4.9
        await watch.step()
        assert len(producer.spool) == 0 and not watch.state.outage, "a short blip stays in memory"
        clock.now += 0.2
        await watch.step()
        assert watch.state.outage and len(producer.spool) == 10 and producer.hold
        producer.send("raw.g1", b"M", b"v10")
        await watch.step()
        assert len(producer.spool) == 11
        answers.append(True)
        clock.now += 1.0
        await watch.step()
        assert watch.state.reachable and not producer.hold

    asyncio.run(run())
    producer.spool.flush()
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(11)]
    producer.close(timeout=0.1)


def test_acknowledgements_counted_at_the_divert_are_not_the_broker_answering(tmp_path: Path) -> None:
    """While records are in flight the producer's acknowledged count is an estimate (by release) that catches up
    when the divert empties librdkafka: those frames were acknowledged before the outage. Taken as the broker
    answering, they ended the outage at once while it was still down (a CI run: broker_reachable 86 ms after
    broker_outage_spooling, the spool replayed into a dead broker, a second outage a second later)."""
    producer = _producer(tmp_path)
    clock = _Clock()
    watch, answers = _watch(producer, clock)
    real_divert = producer.divert

    def divert_catching_up() -> int:
        moved = real_divert()
        producer._loud_acked += 7  # the count made exact by the purge
        return moved

    producer.divert = divert_catching_up  # type: ignore[method-assign]

    async def run() -> None:
        for i in range(10):
            producer.send("raw.g1", b"M", f"v{i}".encode())
        await watch.step()
        clock.now += 5.1
        await watch.step()
        assert watch.state.outage and watch.outages == 1
        for _ in range(3):
            clock.now += 1.0
            await watch.step()
            assert watch.state.outage and not watch.state.reachable and producer.hold, "the probe still fails"
        answers.append(True)
        clock.now += 1.0
        await watch.step()
        assert watch.state.reachable and not producer.hold and watch.outages == 1

    asyncio.run(run())
    producer.close(timeout=0.1)


def test_a_probe_that_fails_while_acknowledgements_arrive_is_not_the_broker_away(tmp_path: Path) -> None:
    """A metadata probe can outlast its timeout on a loaded machine while the broker goes on acknowledging frames
    (a CI run logged broker_unreachable twice around one outage). Acknowledgements that arrived while the probe
    waited are the broker answering: no broker_unreachable, nothing counted towards an outage."""
    producer = _producer(tmp_path)
    clock = _Clock()
    watch, answers = _watch(producer, clock)
    answers.append(True)

    def slow_probe(topic: str, timeout: float) -> bool:
        producer._loud_acked += 3  # frames acknowledged while the probe waited
        clock.now += timeout
        return False  # the metadata reply came too late

    async def run() -> None:
        await watch.step()
        assert watch.state.reachable
        producer.probe = slow_probe  # type: ignore[method-assign]
        for _ in range(8):
            clock.now += 1.0
            await watch.step()
            assert watch.state.reachable and not watch.state.outage and not producer.hold
        assert watch.state.unreachable_s(clock.now) == 0.0
        producer.probe = lambda topic, timeout: False  # type: ignore[method-assign]
        clock.now += 1.0
        await watch.step()
        assert watch.state.reachable is False, "a probe that fails with nothing acknowledged still counts"

    asyncio.run(run())
    producer.close(timeout=0.1)


def test_watch_defers_the_partition_check_until_the_broker_answers(tmp_path: Path) -> None:
    producer = _producer(tmp_path)
    clock = _Clock()
    calls: list[str] = []
    outcomes: list[BaseException | None] = [KafkaException(KafkaError(KafkaError._TRANSPORT)), None]

    def check() -> None:
        calls.append("check")
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    watch, answers = _watch(producer, clock, partition_check=check, check_retry_s=5.0)

    async def run() -> None:
        await watch.step()
        assert calls == [] and producer.hold, "no check while the broker is away"
        answers.append(True)
        await watch.step()
        assert calls == ["check"] and producer.hold, "the broker went away again during the check: retried later"
        clock.now += 1.0
        await watch.step()
        assert calls == ["check"]
        clock.now += 5.0
        await watch.step()
        assert calls == ["check", "check"] and watch.checked and not producer.hold

    asyncio.run(run())
    producer.close(timeout=0.1)


def test_watch_fails_the_gatherer_on_a_bad_topic_layout_and_keeps_the_spool(tmp_path: Path) -> None:
    producer = _producer(tmp_path)
    clock = _Clock()
    reasons: list[str] = []

    def check() -> None:
        raise ConfigError("kafka topics missing: raw.g1 (create them with `mdpipe topics create`)")

    watch, answers = _watch(producer, clock, partition_check=check, on_fatal=reasons.append)
    answers.append(True)
    asyncio.run(watch.step())
    assert reasons and "raw.g1" in reasons[0] and producer.hold
    producer.close(timeout=0.1)


def test_watch_fsyncs_the_spool_on_its_cadence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import REGISTRY

    producer = _producer(tmp_path)
    clock = _Clock()
    watch, _ = _watch(producer, clock)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])

    def count() -> float:
        return REGISTRY.get_sample_value("mdpipe_gather_spool_fsync_seconds_count", {"gatherer": "w1"}) or 0.0

    before = count()

    async def run() -> None:
        producer.divert()
        producer.send("raw.g1", b"M", b"v")
        await watch.step()
        assert synced == [], "not before the cadence"
        clock.now += 1.0
        await watch.step()
        assert len(synced) == 2 and count() == before + 1
        clock.now += 1.0
        await watch.step()
        assert len(synced) == 2, "nothing new: no fsync"

    asyncio.run(run())
    producer.close(timeout=0.1)


def test_divert_during_a_replay_keeps_the_order(tmp_path: Path) -> None:
    """Spooled records being replayed (in librdkafka, not acknowledged) when the broker goes away again: they, the
    rest of their segment and later frames stay in order on disk, and the handed-over segments are not kept twice."""
    spool = Spool(tmp_path, 1 << 24, segment_bytes=100)
    for i in range(30):
        spool.append("raw.g1", f"M{i % 3}".encode(), f"v{i}".encode())
    spool.close()
    producer = _producer(tmp_path)
    assert producer.spooling and len(producer.spool) == 30
    producer.service(budget=15)  # replay: 15 records handed to librdkafka (the broker is away: they wait there)
    assert producer.queued >= 15 and len(producer.spool) == 30
    for i in range(30, 35):
        producer.send("raw.g1", f"M{i % 3}".encode(), f"v{i}".encode())
    producer.divert()
    producer.spool.flush()
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(35)]
    assert len(producer.spool) == 35
    producer.close(timeout=0.1)
    assert _spooled_values(tmp_path) == [f"v{i}".encode() for i in range(35)]
