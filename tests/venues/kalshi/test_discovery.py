"""Kalshi's discovery behind the venue hook: ``VENUE.discovery`` is status listings whose URLs, page parsing,
lifecycle reading and reference data are the trade-api's ``GET /markets``."""

from __future__ import annotations

import calendar
import random
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from schemas.codec import SchemaError
from venues import get_venue
from venues.interface import discovery_kind
from venues.kalshi import discovery
from venues.kalshi.discovery import LOOKUP_BATCH, Listings, RestMarket, _rfc3339_ms
from venues.kalshi.messages import LifecycleMsg

BASE = "https://venue.example/trade-api/v2/"


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_venue_hook_gives_status_listings() -> None:
    listings = get_venue("kalshi").discovery(BASE, 250)
    assert discovery_kind(listings) == "status_listings" and isinstance(listings, Listings)
    assert listings.lookup_batch == LOOKUP_BATCH == 100


def test_listing_and_lookup_urls() -> None:
    listings = Listings(BASE, 250)
    first = listings.listing_url("open")
    assert first.startswith("https://venue.example/trade-api/v2/markets?")
    assert _query(first) == {"limit": ["250"], "status": ["open"]}
    assert _query(listings.listing_url("paused", "c/2=")) == {
        "limit": ["250"],
        "status": ["paused"],
        "cursor": ["c/2="],
    }
    assert _query(listings.lookup_url(["A-1", "B-2"])) == {"limit": ["250"], "tickers": ["A-1,B-2"]}


def test_page_parsing() -> None:
    body = b'{"markets":[{"ticker":"A","status":"active","title":"t","open_time":"2026-01-02T03:04:05Z"}],"cursor":"n"}'
    markets, cursor = Listings(BASE).page(body)
    assert [(m.ticker, m.status) for m in markets] == [("A", "active")] and cursor == "n"
    assert Listings(BASE).page(b'{"markets":[],"cursor":null}') == ([], "")
    for bad in (b"{", b'{"markets":[{"status":"active"}]}', b'{"markets":"x"}'):
        with pytest.raises(SchemaError):
            Listings(BASE).page(bad)


def test_lifecycle_and_reference_data() -> None:
    listings = Listings(BASE)
    msg = LifecycleMsg(market_ticker="M-1", event_type="activated")
    assert listings.lifecycle_of(msg) == ("M-1", "activated")
    assert listings.lifecycle_status("activated") == "active" and listings.lifecycle_status("metadata_updated") is None
    assert listings.classify("settled") == "release" and listings.classify("fee_schedule_updated") == "unknown"
    assert listings.holds("paused") and listings.holds("someday") and not listings.holds("finalized")
    assert listings.known_status("closed") and not listings.known_status("someday")
    ref = listings.market_ref(RestMarket("M-1", status="active", open_time="2026-01-02T03:04:05Z"), 7, "inactive")
    assert (ref.venue, ref.ticker, ref.status, ref.updated_ns) == ("kalshi", "M-1", "inactive", 7)
    assert ref.open_time_ms == 1767323045000


@pytest.mark.parametrize("page", [1, 40, 99, 100, 250, 1000])
def test_a_lookup_never_asks_for_more_tickers_than_one_page_answers(page: int) -> None:
    """Look-ups send limit=page_limit: a batch larger than the page would leave tickers past it unanswered, and a
    held market missing from a look-up's answer is released a lag later."""
    listings = get_venue("kalshi").discovery(BASE, page)
    assert listings.lookup_batch == min(LOOKUP_BATCH, page)
    batch = [f"M-{i}" for i in range(500)][: listings.lookup_batch]
    query = _query(listings.lookup_url(batch))
    assert len(query["tickers"][0].split(",")) == len(batch) <= int(query["limit"][0])


def _strptime_ms(text: str) -> int | None:
    """The reading the REST times always had (strptime of the whole seconds): the reference."""
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) * 1000
    except ValueError:
        return None


def test_rest_times_read_as_strptime_reads_them() -> None:
    rng = random.Random(13)
    samples = ["", "x", "2026-02-30T00:00:00Z", "2016-12-31T23:59:60Z", "2026-1-4T01:02:03Z", "2026-12-04 19:49:08Z"]
    samples += ["2026-12-04t19:49:08Z", "2026-12-04T19:49:08", "2026-12-04T19:49:0", "2026-13-01T00:00:00Z"]
    for _ in range(2000):
        secs = rng.randrange(0, 4_102_444_800)  # 1970 .. 2100
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        samples.append(text + rng.choice(["Z", ".123Z", ".5+00:00", "+00:00", ""]))
    for _ in range(2):  # the second time from the cache of times read before
        for text in samples:
            assert _rfc3339_ms(text) == _strptime_ms(text), text


def test_a_time_read_before_is_not_parsed_again_and_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every discovery pass lists every market with its two times again (and an event's markets share theirs): a
    time is parsed once, from a cache that is cleared when full."""
    parsed: list[str] = []
    real = discovery._parse_rfc3339_ms

    def counted(text: str) -> int | None:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(discovery, "_parse_rfc3339_ms", counted)
    monkeypatch.setattr(discovery, "_TIMES", {})
    listings = Listings(BASE, 1000)
    page = [RestMarket(f"M-{i}", status="active", open_time="2026-01-02T03:04:05Z", close_time="2026-02-03T04:05:06Z")
            for i in range(1000)]  # fmt: skip
    for _ in range(2):  # two passes
        refs = [listings.market_ref(m, 7, "active") for m in page]
        assert {(r.open_time_ms, r.close_time_ms) for r in refs} == {(1767323045000, 1770091506000)}
    assert sorted(parsed) == ["2026-01-02T03:04:05", "2026-02-03T04:05:06"]  # all the reading looks at
    assert _rfc3339_ms("2026-01-02T03:04:05.123+00:00") == 1767323045000 and len(parsed) == 2  # the same second
    monkeypatch.setattr(discovery, "_TIMES_MAX", 4)
    texts = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 10)] + ["", "x"]
    for text in texts * 2:
        assert _rfc3339_ms(text) == _strptime_ms(text), text
        assert len(discovery._TIMES) <= 4


def test_the_venues_rest_times_are_read_without_strptime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two times per listed market, a thousand markets a page, on the gatherer's event loop: the venue's own form
    takes the fast reading (strptime only for what it does not take)."""
    calls: list[str] = []
    real = time.strptime

    def counted(text: str, fmt: str) -> time.struct_time:
        calls.append(text)
        return real(text, fmt)

    monkeypatch.setattr(time, "strptime", counted)
    monkeypatch.setattr(discovery, "_TIMES", {})  # nothing read before
    listings = Listings(BASE, 1000)
    page = [RestMarket(f"M-{i}", status="active", open_time="2026-01-02T03:04:05Z", close_time="2026-02-03T04:05:06.5Z")
            for i in range(1000)]  # fmt: skip
    refs = [listings.market_ref(m, 7, "active") for m in page]
    assert {(r.open_time_ms, r.close_time_ms) for r in refs} == {(1767323045000, 1770091506000)}
    assert calls == []
    assert _rfc3339_ms("2016-12-31T23:59:60Z") == 1483228800000 and calls  # a leap second: strptime's reading
