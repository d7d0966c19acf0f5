"""Discovery as a good REST citizen, against the real emulator (its REST rate limit, its failpage fault, its own
log of every REST request it answered) and the real broker:

- a 429 with ``Retry-After`` (seconds, or an HTTP date) pauses every REST request until then, and the pass goes on;
- a bare 429 (no ``Retry-After``, as some venues send) backs off exponentially, and the pass goes on;
- a page failing mid-listing is retried from its cursor, and nothing is released until the listing completed (over
  http:// and https://);
- under a burst of refresh look-ups on top of discovery, requests stay within ``rest_requests_per_s``.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mdpipe.config import SimConfig
from venue_sim.app import SimOptions, VenueSim
from venue_sim.markets import ST_CLOSED
from venue_sim.server import RestHit

pytestmark = pytest.mark.integration


def _sim(tmp_path: Path, **kw: Any) -> VenueSim:
    """``kw``: settings of the sim section, or the run's ``tls`` and ``rest_*`` knobs (SimOptions)."""
    run = {name: kw.pop(name) for name in ("tls", "rest_rate", "rest_burst", "rest_retry_after") if name in kw}
    settings: dict[str, Any] = {"markets": 12, "rate": 200.0, "seed": 11, "churn_per_s": 0.0, **kw}
    section = SimConfig(port=0, auth=False, truth_path=str(tmp_path / "truth.bin"), **settings)
    return VenueSim(section, SimOptions(**run))


def _query(hit: RestHit) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(hit.target).query).items()}


def _listing(hit: RestHit) -> bool:
    return "tickers" not in _query(hit)


def _max_in_window(times: list[float], width: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - width + 1e-6:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_429_with_retry_after_pauses_rest_until_then_and_the_pass_goes_on(
    form: str, tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    # the venue allows 2 requests/s (bucket 2), the gatherer paces at its default (faster): it meets 429s
    sim = _sim(tmp_path, rest_rate=2.0, rest_burst=2.0, rest_retry_after=form)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap, sim, tmp_path / "spool", topics=topics, discovery_interval_s=0.3, discovery_page=4
        )

        async def body() -> None:
            await ih.wait_for(lambda: g.discoveries >= 2 and sim.server.rest_limiter.rejected >= 3, 40, "passes")

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    log = list(sim.server.rest_log)
    limited = [i for i, h in enumerate(log) if h.status == 429]
    assert len(limited) >= 3
    for i in limited[:-1] if limited[-1] == len(log) - 1 else limited:
        hit, after = log[i], log[i + 1]
        assert hit.retry_after, "the venue sent Retry-After"
        if form == "seconds":
            assert after.at - hit.at >= float(hit.retry_after) - 0.02, (hit, after)
        else:
            until = email.utils.parsedate_to_datetime(hit.retry_after).timestamp()
            assert after.wall >= until - 0.02, (hit, after)
            assert after.target == hit.target, "the same request is sent again"
    assert g.discovery_failures == 0, "a 429 is waited out, not a failed pass"


def test_bare_429_backs_off_exponentially_and_the_pass_goes_on(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    # a 429 without Retry-After; one token per 2.5 s makes at least two 429s in a row
    sim = _sim(tmp_path, markets=8, rest_rate=0.4, rest_burst=1.0, rest_retry_after="none")

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            discovery_interval_s=0.2,
            discovery_page=4,
            discovery_statuses=["open"],
        )

        async def body() -> None:
            await ih.wait_for(
                lambda: g.discoveries >= 1 and sim.server.rest_limiter.rejected >= 2, 40, "a pass through 429s"
            )

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return g

    g = asyncio.run(scenario())
    log = list(sim.server.rest_log)
    assert not any(h.retry_after for h in log)
    runs: list[list[float]] = []  # per run of consecutive 429s: the pause after each
    run: list[float] = []
    for hit, after in itertools.pairwise(log):
        if hit.status == 429:
            run.append(after.at - hit.at)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    assert runs and max(len(r) for r in runs) >= 2, runs
    for r in runs:
        for k, pause in enumerate(r):
            assert 0.5 * 2**k - 0.02 <= pause <= 2**k + 0.5, (k, r)  # jittered 0.5-1 s, 1-2 s, 2-4 s, ...
    assert g.discovery_failures == 0, "a 429 is waited out, not a failed pass"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_page_failing_mid_listing_resumes_from_its_cursor_and_releases_nothing(
    scheme: str, tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    sim = _sim(tmp_path, tls=scheme == "https")

    async def scenario() -> None:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap,
            sim,
            tmp_path / "spool",
            topics=topics,
            discovery_interval_s=0.3,
            discovery_page=4,
            ca_file=sim.ca_file,
        )
        assert g.venue_config.rest_url.startswith(f"{scheme}://")
        closed = [sim.markets.ticker(10), sim.markets.ticker(11)]

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 12 and g.discoveries >= 1, 20, "subscribed")
            sim.markets.status[10] = ST_CLOSED  # REST only: a look-up after a COMPLETE listing releases them
            sim.markets.status[11] = ST_CLOSED
            sim.faults.fail_pages(3)  # the next three pages with a cursor answer 503
            deadline = time.monotonic() + 20
            while sim.server.failed_pages < 3:
                assert time.monotonic() < deadline, "pages failed"
                assert all(t in g.plan.conn_of for t in closed), "released from an incomplete listing"
                await asyncio.sleep(0.01)
            await ih.wait_for(lambda: len(g.plan.conn_of) == 10, 15, "released once the listing completed")
            assert not any(t in g.plan.conn_of for t in closed)

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()

    asyncio.run(scenario())
    listings = [h for h in sim.server.rest_log if _listing(h)]
    failed = [i for i, h in enumerate(listings) if h.status == 503]
    assert len(failed) == 3
    for i in failed:
        assert i + 1 < len(listings)
        page, retry = _query(listings[i]), _query(listings[i + 1])
        assert page["cursor"], "only pages with a cursor fail"
        assert (retry.get("status"), retry.get("cursor")) == (page["status"], page["cursor"]), (
            "the listing resumed from the failed page, not from its first page"
        )


def test_request_rate_holds_under_a_burst_of_refresh_lookups(
    tmp_path: Path, kafka_bootstrap: str, make_topics: Any, ih: Any
) -> None:
    topics = ih.gatherer_topics(make_topics)
    rate = 5.0  # gather.rest_requests_per_s default (the gatherer below uses it)
    # the venue enforces the same rate (bucket one larger: arrival jitter must not turn into 429s)
    sim = _sim(tmp_path, markets=400, rate=300.0, rest_rate=rate, rest_burst=rate + 1)

    async def scenario() -> Any:
        await sim.start()
        g = ih.make_gatherer(
            kafka_bootstrap, sim, tmp_path / "spool", topics=topics, discovery_interval_s=0.2, discovery_page=100
        )
        marks: dict[str, float] = {}

        async def body() -> None:
            await ih.wait_for(lambda: len(g.plan.conn_of) == 400 and g.discoveries >= 1, 30, "subscribed")
            marks["t0"] = time.monotonic()
            for i in range(400):  # a metadata update for every market: 4 refresh look-ups of 100 at once
                sim.lifecycle("metadata", sim.markets.ticker(i))
            refreshes = lambda: sum(  # noqa: E731
                1 for h in sim.server.rest_log if h.at > marks["t0"] and not _listing(h) and h.status == 200
            )
            await ih.wait_for(lambda: refreshes() >= 4 and not g._refresh, 30, "refresh look-ups done")
            await asyncio.sleep(1.0)
            marks["t1"] = time.monotonic()

        try:
            await ih.run_with(g, body)
        finally:
            await sim.stop()
        return marks

    marks = asyncio.run(scenario())
    hits = [h for h in sim.server.rest_log if marks["t0"] <= h.at <= marks["t1"]]
    times = [h.at for h in hits]
    span = marks["t1"] - marks["t0"]
    assert len(hits) >= 0.8 * rate * span, "discovery and refresh wanted more than the rate: the pace was tested"
    assert [h for h in hits if h.status == 429] == [], "the venue never had to refuse a request"
    for width in (0.5, 1.0, 3.0):
        assert _max_in_window(times, width) <= rate + rate * width + 1, width
