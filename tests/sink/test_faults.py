"""Sink faults with the real broker and database: SIGKILL mid-batch, a database outage (through as many retries
as 30 s with the default backoff), a database host that goes silent without resetting the connection.

Each ends with the tables compared to the produced events exactly (no event missing, none twice).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
import psycopg.conninfo
import pytest

from bench.sink.data import make_events

pytestmark = pytest.mark.integration


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _assert_exact(env: Any, events: list[Any]) -> None:
    got, want = env.tables(), env.expected(events)  # tables() also fails on any event_key loaded twice
    assert {t: len(r) for t, r in got.items()} == {t: len(r) for t, r in want.items()}
    assert got == want


def test_sigkill_mid_batch_then_restart_loads_each_event_once(sink_env: Any) -> None:
    events = make_events(30_000, markets=300, seed=21)
    sink_env.produce(events)
    proc = sink_env.spawn_cli("--group", "g-kill", "--batch-rows", "1000", "--batch-ms", "60000", "--metrics-port", "0")
    try:
        _wait(lambda: sum(sink_env.counts().values()) >= 3000 or proc.poll() is not None, 120, "first batches")
        assert proc.poll() is None, (sink_env.tmp / "sink.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    at_kill = sum(sink_env.counts().values())
    assert 0 < at_kill < len(events)  # killed part-way: some batches committed, the one in flight not
    restart = sink_env.spawn_cli("--group", "g-kill", "--exit-when-idle", "--metrics-port", "0", log_name="sink2.log")
    assert restart.wait(180) == 0, (sink_env.tmp / "sink2.log").read_text()[-2000:]
    _assert_exact(sink_env, events)
    log = (sink_env.tmp / "sink2.log").read_text()
    assert "sink_idle_exit" in log


def test_database_outage_30s_nothing_lost_or_doubled(make_sink_env: Callable[..., Any], private_postgres: Any) -> None:
    server = private_postgres()
    env = make_sink_env(dsn=server.dsn)
    events = make_events(30_000, markets=200, seed=22)
    first, second = events[:15_000], events[15_000:]
    env.produce(first)
    # Retry backoff scaled down (default 0.2 s doubling to 5 s over a 30 s outage) so that an 8 s outage goes through
    # as many retries, up to and at the cap, as the 30 s one does with the default backoff.
    loader, thread, out = env.start_loader_thread(
        "g-outage", batch_rows=2000, backoff_initial_s=0.05, backoff_max_s=1.25
    )
    try:
        _wait(lambda: sum(env.counts().values()) == len(first), 120, "first half loaded")
        server.stop()
        env.produce(second)  # arrives while the database is down
        _wait(lambda: not loader.healthy(), 30, "the sink to notice the outage")
        time.sleep(8)
        assert thread.is_alive()
        server.start()
        _wait(lambda: sum(env.counts().values()) >= len(events), 120, "second half loaded")
        time.sleep(1.0)  # let a wrongly repeated batch show up, if there were one
    finally:
        loader.stop()
        thread.join(60)
    assert out and out[0].rows == len(events) and out[0].duplicates == 0
    assert loader.healthy()
    _assert_exact(env, events)


class _FreezableProxy:
    """A TCP relay to PostgreSQL that can stop relaying while keeping its sockets open: to the sink, a database
    host that went silent without resetting the connection."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.frozen = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self._stop.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


def test_silent_database_makes_the_sink_unhealthy_until_it_answers_again(
    make_sink_env: Callable[..., Any], mdpipe_config: Any
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(mdpipe_config.postgres.dsn)
    proxy = _FreezableProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    try:
        env = make_sink_env(dsn=psycopg.conninfo.make_conninfo(mdpipe_config.postgres.dsn, port=proxy.port))
        env = env.with_config(sink=msgspec.structs.replace(env.config.sink, max_write_s=1.0))
        events = make_events(4000, markets=50, seed=23)
        first, second = events[:2000], events[2000:]
        env.produce(first)
        loader, thread, out = env.start_loader_thread("g-silent", batch_rows=500)
        try:
            _wait(lambda: sum(env.counts().values()) == len(first), 120, "first half loaded")
            proxy.frozen.set()  # the database host goes silent: no reset, no answer
            env.produce(second)
            _wait(lambda: not loader.healthy(), 30, "/healthz to report the stuck write")
            assert thread.is_alive()
            proxy.frozen.clear()
            _wait(lambda: sum(env.counts().values()) >= len(events), 120, "second half loaded")
            _wait(loader.healthy, 30, "/healthz healthy again")
        finally:
            loader.stop()
            thread.join(60)
        assert out and out[0].rows == len(events) and out[0].duplicates == 0
        _assert_exact(env, events)
    finally:
        proxy.close()
