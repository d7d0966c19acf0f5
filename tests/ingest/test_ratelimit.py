"""The REST pacer (GCRA) and Retry-After parsing: pure logic, exhaustively and by property."""

from __future__ import annotations

import email.utils
import itertools
import math
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ratelimit import RequestPacer, retry_after_s


def _grants(pacer: RequestPacer, arrivals: list[float]) -> list[float]:
    """When each request (arriving at these times, in order) may be sent."""
    return [t + pacer.reserve(t) for t in arrivals]


def _max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    burst=st.floats(0.0, 20.0),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
    width=st.floats(0.05, 5.0),
)
def test_no_window_gets_more_than_burst_plus_rate_times_width(
    rate: float, burst: float, gaps: list[float], width: float
) -> None:
    pacer = RequestPacer(rate, burst)
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    grants = _grants(pacer, arrivals)
    assert all(g >= a - 1e-12 for g, a in zip(grants, arrivals, strict=True)), "never sent before it arrived"
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(grants)), "sent in arrival order"
    assert _max_in_window(grants, width) <= math.floor(pacer.burst + rate * width + 1e-9)


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 50.0), burst=st.integers(1, 20), n=st.integers(1, 60))
def test_a_burst_waits_only_for_what_exceeds_the_bucket(rate: float, burst: int, n: int) -> None:
    pacer = RequestPacer(rate, burst)
    grants = _grants(pacer, [100.0] * n)  # n requests at once after a long idle
    assert grants[: min(n, burst)] == [100.0] * min(n, burst), "a full bucket sends a burst at once"
    for k in range(burst, n):
        assert grants[k] == pytest.approx(100.0 + (k - burst + 1) / rate), "then one per 1/rate"


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    burst=st.integers(1, 10),
    before=st.integers(0, 15),
    after=st.integers(1, 30),
    hold=st.floats(0.01, 60.0),
)
def test_a_hold_sends_nothing_before_it_ends_then_resumes_at_rate_without_burst(
    rate: float, burst: int, before: int, after: int, hold: float
) -> None:
    pacer = RequestPacer(rate, burst)
    _grants(pacer, [10.0] * before)
    pacer.hold(10.0 + hold)
    later = _grants(pacer, [10.0] * after)
    assert min(later) >= 10.0 + hold - 1e-9
    assert later[0] == pytest.approx(max(10.0 + hold, later[0]))
    for a, b in itertools.pairwise(later):
        assert b - a == pytest.approx(1.0 / rate), "no burst right after a 429 pause"
    assert pacer.held(10.0) == pytest.approx(hold)
    assert pacer.held(10.0 + hold + 1) == 0.0


def test_idle_requests_do_not_wait() -> None:
    pacer = RequestPacer(5.0)
    assert [pacer.reserve(t) for t in (0.0, 1.0, 2.0, 3.0)] == [0.0, 0.0, 0.0, 0.0]


def test_rate_must_be_positive() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="rate must be > 0"):
            RequestPacer(bad)


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s(" 0 ", now) == 0.0
    assert retry_after_s(email.utils.formatdate(now + 12, usegmt=True), now) == pytest.approx(12.0)
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0, "a past date: go now"
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5", "Wed, 99 Foo 2015 07:28:00 GMT"):
        assert retry_after_s(unreadable, now) is None, unreadable


def test_a_rate_limited_page_logs_its_parsed_cursor(monkeypatch: Any, caplog: Any) -> None:
    """The 429 warning names the page by its cursor (the query parameter's value, whole), not the first 40
    characters of the query string (where the cursor may not even start)."""
    import asyncio
    import logging

    from ingest import rest

    cursor = "CgsIzP2kxQYQ+NKfChIxS1hCVEMtMjVERUMzMTA5MDAtVDEwNTk5OS45OQ=="
    url = "https://venue.example/api/markets?" + urlencode({"limit": 1000, "status": "open", "cursor": cursor})
    answers: list[Any] = [rest.RateLimited("HTTP 429", retry_after=0.0), b"{}"]

    def fake_fetch(*args: Any, **kwargs: Any) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(rest, "fetch_body", fake_fetch)
    client = rest.RestClient(gatherer="g9", requests_per_s=1000.0)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(client.get(url, purpose="listing")) == b"{}"
    (line,) = [r for r in caplog.records if r.getMessage() == "rest_rate_limited"]
    assert line.kv["cursor"] == cursor  # type: ignore[attr-defined]
    assert rest.cursor_of("https://x/markets?tickers=A,B&limit=100") == ""
    assert rest.cursor_of("https://x/markets/keyset?limit=500&next_cursor=abc") == "abc"
