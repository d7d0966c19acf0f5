"""Sink faults with the real broker and database: SIGKILL mid-batch, a 30 s database outage.

Both end with the tables compared to the produced events exactly (no event missing, none twice).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

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
    loader, thread, out = env.start_loader_thread("g-outage", batch_rows=2000)
    try:
        _wait(lambda: sum(env.counts().values()) == len(first), 120, "first half loaded")
        server.stop()
        env.produce(second)  # arrives while the database is down
        _wait(lambda: not loader.healthy(), 30, "the sink to notice the outage")
        time.sleep(30)
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
