"""Held frames (gather.linger_ms): released to librdkafka in order, once per window, by a read or by the fallback
timer; a full queue spools the rest in order; shutdown and direct sends never overtake or lose a held frame."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from ingest.gatherer import Gatherer
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import GatherConfig, KafkaConfig, VenueConfig
from mdpipe.kafka import producer_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spooled(path: Path) -> list[bytes]:
    return [v for seg in Spool(path, 1 << 20).segments() for _, _, v in Spool.read(seg)]


def test_release_hands_held_frames_over_in_order_and_spools_what_does_not_fit(tmp_path: Path) -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), queue_max=10, warm_topics={})
    for i in range(30):
        producer.held.append(("raw.g1", b"M", f"v{i}".encode()))
    assert producer.sent == 0  # held, not yet in librdkafka
    assert producer.release() == 30
    assert producer.held == []
    assert producer.sent == 10  # the queue holds 10
    assert producer.spooling and producer.spooled == 20
    producer.send("raw.g1", b"M", b"after")  # spooling: goes behind the held ones
    producer.spool.flush()
    assert _spooled(tmp_path) == [f"v{i}".encode() for i in range(10, 30)] + [b"after"]
    producer.close(timeout=0.5)
    assert sorted(_spooled(tmp_path)) == sorted([f"v{i}".encode() for i in range(30)] + [b"after"])


def test_send_releases_held_frames_first(tmp_path: Path) -> None:
    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), queue_max=3, warm_topics={})
    producer.held += [("raw.g1", b"M", b"h0"), ("raw.g1", b"M", b"h1")]
    producer.send("raw.g1", b"M", b"s0")  # fills the queue (3) after the two held frames
    producer.send("raw.g1", b"M", b"s1")  # spooled
    assert producer.held == [] and producer.sent == 3 and producer.spooled == 1
    producer.close(timeout=0.5)
    # the purge at close puts what librdkafka held ahead of the spool (RawProducer._purge_to_spool): the next run
    # replays every frame in the order it was handed over
    assert _spooled(tmp_path) == [b"h0", b"h1", b"s0", b"s1"]


class _Recorder:
    """RawProducer's holding interface; records each release."""

    def __init__(self) -> None:
        self.held: list[tuple[str, bytes | None, bytes]] = []
        self.released: list[list[bytes]] = []
        self.sent: list[bytes] = []

    def release(self) -> int:
        self.released.append([v for _, _, v in self.held])
        n = len(self.held)
        self.held.clear()
        return n

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append(value)


def _gatherer(producer: Any, linger_ms: float, read_window_ms: float = 0.0) -> Gatherer:
    gather = GatherConfig(channels=["orderbook_delta"], linger_ms=linger_ms, read_window_ms=read_window_ms)
    venue = VenueConfig(rest_url="http://x", ws_url="ws://x")
    return Gatherer(
        gather, venue, producer, gatherer_id="g1", raw_topic="raw.g1", dlq_topic="dlq", markets_topic="markets"
    )


def test_frames_are_held_until_a_read_ends_after_the_window() -> None:
    async def scenario() -> _Recorder:
        p = _Recorder()
        g = _gatherer(p, linger_ms=50)
        g._loop = asyncio.get_running_loop()
        g._emit("M", b"a")
        g._emit("M", b"b")
        g.after_read()  # the window has not passed: still held
        assert p.released == [] and len(p.held) == 2
        await asyncio.sleep(0.06)
        g._emit("M", b"c")
        g.after_read()  # the oldest waited 50 ms: all three go together
        assert p.released == [[b"a", b"b", b"c"]]
        await asyncio.sleep(0.12)  # the fallback timer of the first window was cancelled: no empty release
        assert p.released == [[b"a", b"b", b"c"]]
        return p

    asyncio.run(scenario())


def test_without_a_read_the_timer_releases_held_frames() -> None:
    async def scenario() -> None:
        p = _Recorder()
        g = _gatherer(p, linger_ms=20)
        g._loop = asyncio.get_running_loop()
        g._emit("M", b"a")
        await asyncio.sleep(0.01)
        assert p.released == []
        await asyncio.sleep(0.06)  # due at twice the window
        assert p.released == [[b"a"]]

    asyncio.run(scenario())


def test_a_gatherer_not_running_holds_nothing() -> None:
    p = _Recorder()
    g = _gatherer(p, linger_ms=50)
    g._emit("M", b"a")  # no loop (before run() or after shutdown began): straight to the producer
    assert p.released == [[b"a"]] and p.held == []


def test_service_loop_runs_slowly_unless_the_spool_holds_frames(tmp_path: Path) -> None:
    from ingest.gatherer import SERVICE_S, SERVICE_SPOOLING_S

    conf = producer_config(KafkaConfig(bootstrap_servers=f"127.0.0.1:{_free_port()}"), linger_ms=1)
    producer = RawProducer(conf, Spool(tmp_path, 1 << 20), queue_max=2, warm_topics={})
    g = _gatherer(producer, linger_ms=20)
    assert SERVICE_S >= 5 * SERVICE_SPOOLING_S
    assert asyncio.run(g._service_step()) == SERVICE_S  # releases serve delivery reports meanwhile
    for i in range(3):
        producer.send("raw.g1", b"M", f"v{i}".encode())  # the third does not fit: spooled
    assert producer.spooling
    assert asyncio.run(g._service_step()) == SERVICE_SPOOLING_S  # the spool drains at the fast pace
    producer.close(timeout=0.2)


class _Socket:
    """A transport the read pacer can pause (counts nothing: only the window's timing matters here)."""

    reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return False


def test_paced_reads_release_what_waited_a_window_once_per_loop_iteration() -> None:
    """gather.read_window_ms: what a read returns waited in the kernel since its window began, so the linger counts
    from there (a window as long as the linger releases at every read, not every other one); the release waits for
    the end of the loop iteration, so the connections read together go out together."""

    async def scenario() -> None:
        p = _Recorder()
        g = _gatherer(p, linger_ms=20, read_window_ms=20)
        g._loop = asyncio.get_running_loop()
        sock = _Socket()
        g.read_pacer.after_read(sock)  # a read ended: its socket rests for 20 ms
        await asyncio.sleep(0.03)
        assert sock.reading  # the window ended: the next read returns what arrived during it
        g._emit("A", b"a")  # connection 1's read
        g.after_read()
        assert p.released == [] and len(p.held) == 1  # not yet: another connection may read in this iteration
        g._emit("B", b"b")  # connection 2's read, same iteration
        g.after_read()
        await asyncio.sleep(0)
        assert p.released == [[b"a", b"b"]]  # both, at once, without waiting for another window

    asyncio.run(scenario())
