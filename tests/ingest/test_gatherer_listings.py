"""The gatherer's status-listings path (``Gatherer.discover_once`` for a venue with
:class:`venues.interface.StatusListings`), offline: a toy venue whose listings are JSON pages at its REST URL
(look-ups two tickers a request) and a fake REST client that records every URL and fails where it is told to.
Covers a listing resumed from the failing page's cursor, a failed look-up batch retried alone, and a changed REST
URL taking effect on the next pass."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import venues
from ingest import gatherer as gatherer_module
from ingest.rest import DiscoveryError
from mdpipe.config import VenueConfig
from tests.ingest.conftest import make_gatherer
from tests.ingest.toy_listings import ToyListings

TOPICS = {"raw": "raw.toy", "dlq": "dlq.toy", "markets": "markets.toy"}


class ToyVenue:
    """The default venue (sessions, keys) with the toy's listings as its discovery."""

    def __init__(self) -> None:
        self._real = venues.get_venue(venues.default_name())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def discovery(self, rest_url: str, page_limit: int) -> ToyListings:
        return ToyListings(rest_url)


class FakeRest:
    """``get`` of the gatherer's REST client: the answer ``pages`` gives for a path and query, or a
    :class:`DiscoveryError` for a URL in ``fail`` (once each); every URL asked is recorded."""

    def __init__(self, pages: Callable[[str, dict[str, str]], dict[str, Any]]) -> None:
        self.pages = pages
        self.urls: list[str] = []
        self.fail: set[str] = set()

    async def get(self, url: str, *, purpose: str) -> bytes:
        self.urls.append(url)
        if url in self.fail:
            self.fail.discard(url)
            raise DiscoveryError(f"GET {url}: HTTP 503", status=503)
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        return json.dumps(self.pages(f"{parts.scheme}://{parts.netloc}{parts.path}", query)).encode()


def _gatherer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rest: FakeRest) -> Any:
    monkeypatch.setattr(gatherer_module, "get_venue", lambda name: ToyVenue())
    where = SimpleNamespace(rest_url="http://one.example/api", ws_url="ws://127.0.0.1:9/ws")
    g = make_gatherer("127.0.0.1:9", where, tmp_path / "spool", topics=TOPICS, raw_partitions=1, rest_lag_s=0.001)
    g.rest = rest
    g.refs = []
    g._send = lambda topic, key, value: g.refs.append(key.decode())  # published reference data, by ticker
    return g


def _held(g: Any) -> set[str]:
    return set(g.plan.conn_of)


def test_a_listing_resumes_from_the_failing_pages_cursor_and_a_failed_lookup_batch_alone_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = {"live": ["A", "B", "C", "D", "E"], "asleep": [], "status": {}}

    def pages(path: str, query: dict[str, str]) -> dict[str, Any]:
        if path.endswith("/list"):
            listed = world[query["status"]]
            start = int(query["cursor"] or 0)
            chunk = listed[start : start + 3]
            more = start + 3 < len(listed)
            return {"markets": [[t, query["status"]] for t in chunk], "cursor": str(start + 3) if more else ""}
        asked = query["tickers"].split(",")
        return {"markets": [[t, world["status"][t]] for t in asked if t in world["status"]], "cursor": ""}

    rest = FakeRest(pages)
    g = _gatherer(tmp_path, monkeypatch, rest)
    base = "http://one.example/api"

    # pass 1: the second page of `live` fails once; the retry asks for that page only, not the first again
    rest.fail.add(f"{base}/list?status=live&cursor=3")
    with pytest.raises(DiscoveryError):
        asyncio.run(g.discover_once())
    assert _held(g) == {"A", "B", "C"}  # the pages received are applied
    assert asyncio.run(g.discover_once()) == 5 and _held(g) == {"A", "B", "C", "D", "E"}
    assert rest.urls == [
        f"{base}/list?status=live&cursor=",
        f"{base}/list?status=live&cursor=3",
        f"{base}/list?status=live&cursor=3",
        f"{base}/list?status=asleep&cursor=",
    ]
    assert g.discovery_resumes == 1

    # pass 2: only A listed; B..E looked up two a request; the second batch fails once and is retried alone
    world["live"] = ["A"]
    world["status"] = {"B": "gone", "C": "asleep", "D": "gone", "E": "gone"}
    rest.urls.clear()
    rest.fail.add(f"{base}/look?tickers=D%2CE")
    with pytest.raises(DiscoveryError):
        asyncio.run(g.discover_once())
    assert _held(g) == {"A", "C", "D", "E"}  # the first batch's answer released B
    assert asyncio.run(g.discover_once()) == 1
    assert _held(g) == {"A", "C"}
    assert rest.urls == [
        f"{base}/list?status=live&cursor=",
        f"{base}/list?status=asleep&cursor=",
        f"{base}/look?tickers=B%2CC",
        f"{base}/look?tickers=D%2CE",
        f"{base}/look?tickers=D%2CE",
    ]


def test_a_new_rest_url_is_listed_from_on_the_next_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pages(path: str, query: dict[str, str]) -> dict[str, Any]:
        if path.endswith("/list") and query["status"] == "live":
            return {"markets": [[t, "live"] for t in ("A", "B")], "cursor": ""}
        return {"markets": [], "cursor": ""}

    rest = FakeRest(pages)
    g = _gatherer(tmp_path, monkeypatch, rest)
    assert asyncio.run(g.discover_once()) == 2
    assert all(url.startswith("http://one.example/api/") for url in rest.urls)
    rest.urls.clear()
    g.venue_config = VenueConfig(rest_url="http://two.example/v2", ws_url=g.venue_config.ws_url)
    asyncio.run(g.discover_once())
    assert rest.urls and all(url.startswith("http://two.example/v2/") for url in rest.urls), rest.urls
    assert _held(g) == {"A", "B"}
