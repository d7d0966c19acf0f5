"""No background task of the gatherer dies quietly: each loop's real dependency is broken and the gatherer watched.

- REST discovery and refresh against a real HTTP server that cuts bodies short (``http.client.IncompleteRead``
  in the real client): both loops survive, count, log and catch up once REST heals.
- The service loop against a spool it cannot read: failing for ``task_failure_limit_s`` fails the gatherer, run()
  returns by itself, ``/healthz`` answers 503, ``mdpipe gather`` exits 3.
- Any task ending: the supervisor in run() notices.
- ``mdpipe gather`` whose disk fills for real (RLIMIT_FSIZE): frames are counted as dropped, ``/healthz`` is 503
  while it drops, delivery goes on, and health comes back when the disk has room again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mdpipe.config import Config, SimConfig
from mdpipe.metrics import start_metrics_server
from mdpipe.topics import ensure_topics, topic_names
from schemas.markets import decode_market
from venue_sim.app import VenueSim
from venue_sim.markets import ST_ACTIVE

pytestmark = pytest.mark.integration


def _sim(tmp_path: Path, **kw: Any) -> VenueSim:
    settings: dict[str, Any] = {"markets": 10, "rate": 300.0, "seed": 3, "churn_per_s": 0.0, **kw}
    return VenueSim(SimConfig(port=0, auth=False, truth_path=str(tmp_path / "truth.bin"), **settings))


def _task(g: Any, name: str) -> asyncio.Task[Any]:
    return next(t for t in g._tasks if t.get_name() == name)


def test_rest_bodies_cut_short_do_not_stop_discovery_or_refresh(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    marks: dict[str, Any] = {}

    async def scenario() -> Any:
        await sim.start()
        proxy = ih.RestProxy(sim.rest_url)
        g = ih.make_gatherer(
            kafka_bootstrap, sim, tmp_path / "spool", topics=topics, rest_url=proxy.url, discovery_interval_s=0.3
        )

        async def body() -> None:
            # confirmed, not only connected: a lifecycle message sent before the venue took the lifecycle subscription
            # never comes, and only the settled market's lifecycle messages ask for its refresh
            await ih.wait_for(lambda: len(g.plan.conn_of) == 10 and ih.confirmed(g), 20, "subscriptions confirmed")
            proxy.fault = lambda path: "truncate"
            # only discovery can find this one (REST lists it, no lifecycle message announces it) ...
            index = sim.markets.add(sim.generator.now_ms())
            sim.books.grow(len(sim.markets))
            sim.markets.status[index] = ST_ACTIVE
            marks["listed"] = sim.markets.ticker(index)
            # ... and only the refresh publishes this one's settled reference data
            marks["settled"] = sim.markets.ticker(2)
            sim.settle_market(marks["settled"])
            # a failed pass resumes at the page that failed: when the faults begin in the middle of a pass, every
            # listing cut short from then on is of the status it had reached (not necessarily open)
            await ih.wait_for(
                lambda: (
                    sum("tickers=" in p for _, p in proxy.faults) >= 2
                    and sum("status=" in p for _, p in proxy.faults) >= 3
                ),
                20,
                "refreshes and discovery passes cut short",
            )
            assert g.discovery_failures >= 3
            for name in ("gather-discovery", "gather-refresh"):
                assert not _task(g, name).done(), f"{name} ended"
            assert g.healthy(), "a REST outage does not make the gatherer unhealthy"
            proxy.fault = lambda path: None
            await ih.wait_for(lambda: marks["listed"] in g.plan.conn_of, 15, "discovery caught up")
            await ih.wait_for(
                lambda: not g._refresh and any("tickers=" in p for p in proxy.requests[-20:]), 15, "refresh caught up"
            )
            await asyncio.sleep(0.5)

        try:
            await ih.run_with(g, body)
        finally:
            proxy.close()
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    assert g.failure is None
    refs = [decode_market(v) for _, v in ih.read_topic(kafka_bootstrap, topics["markets"])]
    assert any(r.ticker == marks["settled"] and r.status == "finalized" for r in refs)
    assert any(r.ticker == marks["listed"] and r.status == "active" for r in refs)


@pytest.mark.parametrize("name", ["gather-service", "gather-discovery", "gather-refresh", "gather-watchdog"])
def test_a_task_that_ends_fails_the_gatherer(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any, name: str
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(kafka_bootstrap, sim, tmp_path / "spool", topics=topics)
        stop = asyncio.Event()
        run = asyncio.create_task(g.run(stop))
        try:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 10 and g.connections[0].up, 20, "subscribed")
            assert g.healthy()
            _task(g, name).cancel()
            await asyncio.wait_for(asyncio.shield(run), 10)  # returns by itself: the supervisor noticed
        finally:
            stop.set()
            await run
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    assert g.failure is not None and name in g.failure
    assert not g.healthy()


def test_a_service_loop_that_keeps_failing_fails_the_gatherer(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path)
    spool_dir = tmp_path / "spool"

    async def scenario() -> tuple[Any, int]:
        await sim.start()
        # a producer queue of 5 frames: the spool is in use all the time
        g = ih.make_gatherer(  # a queue of 5 one-frame records (no bundles): the spool is in use all the time
            kafka_bootstrap, sim, spool_dir, topics=topics, queue_max=5, task_failure_limit_s=2.0, bundle_max_bytes=0
        )
        server = start_metrics_server(0, health=g.healthy)
        stop = asyncio.Event()
        run = asyncio.create_task(g.run(stop))
        try:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 10 and g.producer.spooled > 100, 20, "spooling")
            # a segment the spool cannot read, first in line to be drained
            (spool_dir / "-00000000001.spool").mkdir()
            started = time.monotonic()
            await asyncio.wait_for(asyncio.shield(run), 30)
            assert time.monotonic() - started >= 2.0, "not before the failure limit"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
                    status = r.status
            except urllib.error.HTTPError as exc:
                status = exc.code
        finally:
            stop.set()
            await run
            server.close()
            await sim.stop()
        return g, status

    g, status = asyncio.run(scenario())
    assert g.failure is not None and g.failure.startswith("service failing") and "IsADirectoryError" in g.failure
    assert status == 503


# -- mdpipe gather as a process ----------------------------------------------------------------
_MDPIPE = [sys.executable, "-m", "mdpipe"]
_NO_METRICS = ["--metrics-port", "0"]  # a free port


def _env(tmp_path: Path, config: Config, **gather: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MDPIPE_RUN_DIR": str(tmp_path / "run"),
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
        "MDPIPE_KAFKA__TOPIC_PREFIX": config.kafka.topic_prefix,
    }
    env.update({f"MDPIPE_GATHER__{k.upper()}": v for k, v in gather.items()})
    return env


def _start_sim(env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    sim = subprocess.Popen(
        [*_MDPIPE, "sim", "--markets", "20", "--rate", "400", "--port", "0", "--no-auth", "--churn", "0", *_NO_METRICS],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert sim.stdout is not None
    return sim, dict(sim.stdout.readline().split() for _ in range(2))


def _gather_cmd(urls: dict[str, str], spool: Path) -> list[str]:
    urls_args = ["--rest-url", urls["REST"], "--ws-url", urls["WS"]]
    return [*_MDPIPE, "gather", "--id", "g1", "--no-auth", *urls_args, *_NO_METRICS, "--spool-dir", str(spool)]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _stage(tmp_path: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    stage = tmp_path / "run" / "stages" / "gather-g1.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gatherer exited"
        if stage.exists():
            record: dict[str, Any] = json.loads(stage.read_text())
            try:
                if _get(record["health_url"])[0] == 200:
                    return record
            except OSError:
                pass
        time.sleep(0.3)
    raise AssertionError("the gatherer never became healthy")


def _metric(text: str, name: str) -> float:
    found = re.search(rf'^{name}{{gatherer="g1"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _fill_limit(limit: int) -> Any:
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as a full disk gives ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limit_file_size


def test_gather_process_whose_disk_fills_counts_drops_and_reports_unhealthy(
    tmp_path: Path, mdpipe_config: Config, ih: Any
) -> None:
    ensure_topics(mdpipe_config)
    # a producer queue of 20 records of one frame each (no bundles: a bundle is one record): the spool is written
    # all the time (segments of a few KiB: one per drain); no file of the gatherer may grow past 2 KB
    env = _env(tmp_path, mdpipe_config, queue_max_frames="20", unhealthy_after_drop_s="2", bundle_max_bytes="0")
    sim, urls = _start_sim(env)
    log = tmp_path / "gather.log"
    try:
        gather = subprocess.Popen(
            _gather_cmd(urls, tmp_path / "spool"),
            env=env,
            stderr=log.open("w"),
            text=True,
            preexec_fn=_fill_limit(2000),
        )
        try:
            # not _stage(): it may never look healthy, the spool starts dropping at once
            stage = tmp_path / "run" / "stages" / "gather-g1.json"
            deadline = time.monotonic() + 60
            while not stage.exists():
                assert time.monotonic() < deadline and gather.poll() is None
                time.sleep(0.2)
            record = json.loads(stage.read_text())
            seen_503 = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert gather.poll() is None, "the gatherer keeps running"
                dropped = _metric(_get(record["metrics_url"])[1], "mdpipe_gather_dropped_frames_total")
                seen_503 = seen_503 or _get(record["health_url"])[0] == 503
                if dropped > 0 and seen_503:
                    break
                time.sleep(0.2)
            assert dropped > 0 and seen_503, (dropped, seen_503)
            # the disk has room again: drops stop, health comes back, frames keep flowing
            resource.prlimit(gather.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            deadline = time.monotonic() + 30
            while _get(record["health_url"])[0] != 200:
                assert time.monotonic() < deadline, "health came back"
                time.sleep(0.2)
            text = _get(record["metrics_url"])[1]
            dropped_after = _metric(text, "mdpipe_gather_dropped_frames_total")
            assert dropped_after >= dropped
            time.sleep(2.0)
            assert _metric(_get(record["metrics_url"])[1], "mdpipe_gather_dropped_frames_total") == dropped_after
            gather.send_signal(signal.SIGTERM)
            assert gather.wait(60) == 0
            stderr = log.read_text()
        finally:
            if gather.poll() is None:
                gather.kill()
                gather.wait()
    finally:
        sim.terminate()
        sim.wait(30)
    assert "spool_write_failed" in stderr and "File too large" in stderr
    frames = ih.read_frames(mdpipe_config.kafka.bootstrap_servers, topic_names(mdpipe_config).raw["g1"])
    assert {f.market for f in frames if f.kind == "delta"}, "frames reached the topic around the drops"


def test_gather_process_exits_3_when_it_cannot_go_on(tmp_path: Path, mdpipe_config: Config) -> None:
    ensure_topics(mdpipe_config)
    # a queue of 20 one-frame records (no bundles): the spool is in use all the time
    env = _env(tmp_path, mdpipe_config, queue_max_frames="20", task_failure_limit_s="2", bundle_max_bytes="0")
    sim, urls = _start_sim(env)
    spool = tmp_path / "spool"
    log = tmp_path / "gather.log"
    try:
        gather = subprocess.Popen(_gather_cmd(urls, spool), env=env, stderr=log.open("w"), text=True)
        try:
            _stage(tmp_path, gather)
            segments = spool / f"{mdpipe_config.kafka.topic_prefix}g1"
            deadline = time.monotonic() + 30
            while not list(segments.glob("*.spool")):
                assert time.monotonic() < deadline, "the spool is in use"
                time.sleep(0.1)
            (segments / "-00000000001.spool").mkdir()  # a segment the spool cannot read
            code = gather.wait(60)
            stderr = log.read_text()
        finally:
            if gather.poll() is None:
                gather.kill()
                gather.wait()
    finally:
        sim.terminate()
        sim.wait(30)
    assert code == 3, stderr[-2000:]
    assert "gatherer_failed" in stderr and "IsADirectoryError" in stderr
