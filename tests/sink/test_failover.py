"""A SIGKILLed sink restarted with the same identity (static group membership) takes its partitions back at once,
with the real broker and database: seconds, not the session timeout, and every event exactly once."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from bench.sink.data import make_events
from sink.cli import member_identity

pytestmark = pytest.mark.integration

SESSION_TIMEOUT_MS = 45_000  # far above the bound below: a restart that waits for the old session cannot pass
REJOIN_BOUND_S = 12.0  # restart (Python start-up, migrate check, join, offsets) to the first new row committed


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkilled_sink_restarted_with_its_identity_gets_its_partitions_back_within_seconds(sink_env: Any) -> None:
    env = sink_env
    events = make_events(10_000, markets=120, seed=31)
    first, second = events[:6_000], events[6_000:]
    base = env.cli_env
    env.cli_env = lambda: {**base(), "MDPIPE_SINK__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}  # type: ignore[method-assign]
    args = ("--group", "g-static", "--instance-id", "sink-test-1", "--metrics-port", "0", "--batch-ms", "50")
    env.produce(first)
    proc = env.spawn_cli(*args)
    restart = None
    try:
        _wait(lambda: sum(env.counts().values()) >= len(first) or proc.poll() is not None, 120, "the first events")
        assert proc.poll() is None, (env.tmp / "sink.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        restarted_at = time.monotonic()
        restart = env.spawn_cli(*args, "--exit-when-idle", log_name="sink2.log")
        env.produce(second)  # arrives while the new process starts: it must be loaded once the member is back
        _wait(lambda: sum(env.counts().values()) >= len(first) + len(second), 120, "the events after the restart")
        back_s = time.monotonic() - restarted_at
        assert restart.wait(120) == 0, (env.tmp / "sink2.log").read_text()[-2000:]
    finally:
        for p in (proc, restart):
            if p is not None and p.poll() is None:
                p.kill()
    log = (env.tmp / "sink2.log").read_text()
    assert re.search(r"event=partitions_assigned .*stored=6\b", log), log[-2000:]  # resumed from the rows' offsets
    assert back_s < REJOIN_BOUND_S, f"restarted sink loaded the new events after {back_s:.1f}s\n{log[-2000:]}"
    got, want = env.tables(), env.expected(events)  # tables() also fails on any event_key loaded twice
    assert {t: len(r) for t, r in got.items()} == {t: len(r) for t, r in want.items()}
    assert got == want


def test_member_identity_is_host_and_fixed_port_and_none_for_a_random_port() -> None:
    assert member_identity("db-host.example", 9121) == "sink-db-host.example-9121"
    assert member_identity("weird host/1", 9122) == "sink-weird_host_1-9122"
    assert member_identity("db-host", 0) == ""


def test_a_second_sink_with_the_same_identity_fences_the_first_which_exits_with_one_line(sink_env: Any) -> None:
    env = sink_env
    args = ("--group", "g-fence", "--instance-id", "sink-twin", "--metrics-port", "0")
    first = env.spawn_cli(*args, log_name="first.log")
    second = None
    try:
        _wait(lambda: b"partitions_assigned" in (env.tmp / "first.log").read_bytes() or first.poll() is not None, 60,
              "the first sink's assignment")  # fmt: skip
        second = env.spawn_cli(*args, log_name="second.log")
        code = first.wait(60)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    log = (env.tmp / "first.log").read_text()
    assert code == 1, log[-2000:]
    assert "event=sink_fenced" in log and "give each running sink its own sink.instance_id" in log
    assert "Traceback" not in log
