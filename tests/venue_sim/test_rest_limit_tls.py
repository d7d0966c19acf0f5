"""The emulator's REST rate limit (429, with or without Retry-After), the failpage fault, and TLS (https/wss with a
certificate generated at start-up), over real sockets."""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mdpipe.cli import build_parser
from venue_sim.faults import parse_faults
from venue_sim.rest_limit import RestLimiter
from venue_sim.tls import make_certificates

from .conftest import Client, running_sim


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


async def _aget(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], Any]:
    return await asyncio.to_thread(_get, url, context)


def test_limiter_buckets_per_client_and_rejections_take_no_token() -> None:
    lim = RestLimiter(rate=2.0, burst=2.0, retry_after="seconds")
    assert lim.check("a", 0.0, 1000.0) is None and lim.check("a", 0.0, 1000.0) is None
    assert lim.check("a", 0.0, 1000.0) == {"Retry-After": "1"}
    assert lim.check("b", 0.0, 1000.0) is None, "another client has its own bucket"
    for _ in range(5):
        assert lim.check("a", 0.1, 1000.1) is not None  # refused ones take nothing ...
    assert lim.check("a", 0.5, 1000.5) is None  # ... so one token is back after 1/rate
    assert lim.rejected == 6
    lim = RestLimiter(rate=0.25, burst=1.0, retry_after="date")
    assert lim.check("a", 0.0, 1000.2) is None
    refused = lim.check("a", 0.0, 1000.2)
    assert refused is not None
    assert email.utils.parsedate_to_datetime(refused["Retry-After"]).timestamp() == 1001 + 4
    lim = RestLimiter(rate=1.0, retry_after="none")
    assert lim.check("a", 0.0, 0.0) is None and lim.check("a", 0.0, 0.0) == {}
    assert RestLimiter().check("a", 0.0, 0.0) is None, "rate 0: no limit"
    with pytest.raises(ValueError, match="none, seconds, date"):
        RestLimiter(1.0, retry_after="minutes")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["none", "seconds", "date"])
def test_rest_rate_limit_answers_429_as_the_default_venue_does(form: str) -> None:
    async def scenario() -> None:
        async with running_sim(markets=5, rate=10.0, rest_rate=1.0, rest_burst=2.0, rest_retry_after=form) as sim:
            url = f"{sim.rest_url}/markets?limit=2"
            answers = [await _aget(url) for _ in range(3)]
            assert [a[0] for a in answers] == [200, 200, 429]
            _status, headers, body = answers[2]
            assert body == {"error": "too many requests"}
            if form == "none":
                assert "Retry-After" not in headers
            elif form == "seconds":
                assert headers["Retry-After"] == "1"
            else:
                assert email.utils.parsedate_to_datetime(headers["Retry-After"]).tzinfo is not None
            assert (await _aget(f"{sim.rest_url}/markets/orderbooks?tickers=X"))[0] == 429, "every REST route"
            assert (await _aget(f"http://127.0.0.1:{sim.port}/_sim/stats"))[0] == 200, "admin is not"
            await asyncio.sleep(1.05)
            assert (await _aget(url))[0] == 200
            stats = sim.stats()
            assert stats["rest_rate_limited"] == 2 and stats["rest_requests"] == 5
            assert [h.status for h in sim.server.rest_log] == [200, 200, 429, 429, 200]

    asyncio.run(scenario())


def test_failpage_fails_pages_with_a_cursor_only() -> None:
    assert parse_faults("failpage:2@1s")[0].count == 2
    with pytest.raises(ValueError, match="whole venue"):
        parse_faults("failpage#1@1s")

    async def scenario() -> None:
        async with running_sim(markets=10, rate=10.0, faults="failpage:2@0") as sim:
            await asyncio.sleep(0.2)
            first = await _aget(f"{sim.rest_url}/markets?status=open&limit=4")
            assert first[0] == 200 and first[2]["cursor"] == "4", "a listing's first page is never failed"
            cursor = first[2]["cursor"]
            page = f"{sim.rest_url}/markets?status=open&limit=4&cursor={cursor}"
            assert [(await _aget(page))[0] for _ in range(3)] == [503, 503, 200]
            sim.faults.fail_pages()
            assert (await _aget(f"{sim.rest_url}/markets?tickers={first[2]['markets'][0]['ticker']}"))[0] == 200
            assert (await _aget(page))[0] == 503
            assert sim.stats()["rest_failed_pages"] == 3

    asyncio.run(scenario())


def test_tls_serves_https_and_wss_trusted_only_through_the_generated_ca(tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other")

    async def scenario() -> None:
        async with running_sim(markets=5, rate=50.0, tls=True, tls_dir=str(tmp_path / "tls")) as sim:
            assert sim.rest_url.startswith("https://") and sim.ws_url.startswith("wss://")
            assert sim.ca_file == str(tmp_path / "tls" / "ca.pem") and sim.stats()["tls"]
            trusted = ssl.create_default_context(cafile=sim.ca_file)
            status, _, body = await _aget(f"{sim.rest_url}/markets?limit=5", trusted)
            assert status == 200 and len(body["markets"]) == 5
            for context in (None, ssl.create_default_context(cafile=other.ca_file)):
                with pytest.raises(urllib.error.URLError) as err:
                    await _aget(f"{sim.rest_url}/markets?limit=5", context)
                assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
            from websockets.asyncio.client import connect

            async with connect(sim.ws_url, ssl=trusted) as ws:
                client = Client(ws)
                tickers = [m["ticker"] for m in body["markets"]]
                cid = await client.cmd("subscribe", channels=["orderbook_delta"], market_tickers=tickers)
                msgs = await client.until(lambda m: m.get("type") == "orderbook_snapshot")
                assert any(m.get("id") == cid and m["type"] == "subscribed" for m in msgs)

    asyncio.run(scenario())


def test_sim_help_documents_tls_rate_limit_and_failpage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--tls", "CA <path>", "--rest-rate", "--rest-retry-after", "failpage[:N]", "HTTP 429"):
        assert needle in text, needle
