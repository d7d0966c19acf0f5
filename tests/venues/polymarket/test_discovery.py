"""Polymarket discovery: Gamma keyset and CLOB cursor listings parse (token ids encoded as JSON strings, both
cursor ends), the pager walks to the end and stops on a repeated cursor, only tradable markets are subscribed."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from schemas.codec import SchemaError
from venues.polymarket.discovery import Pager, assets_by_condition, parse_clob_page, parse_gamma_page


def gamma_market(cid: str, **kw: object) -> dict[str, object]:
    m: dict[str, object] = {
        "id": "1", "conditionId": cid, "question": "Will it?", "slug": "will-it", "outcomes": '["Yes", "No"]',
        "clobTokenIds": f'["{cid}1", "{cid}2"]', "active": True, "closed": False, "archived": False,
        "enableOrderBook": True, "acceptingOrders": True, "orderPriceMinTickSize": 0.01, "negRisk": False,
        "endDate": "2026-12-31T12:00:00Z", "volumeNum": 12.5,
    }  # fmt: skip
    m.update(kw)
    return m


def test_gamma_page_parses_string_encoded_token_ids() -> None:
    body = json.dumps({"markets": [gamma_market("0xa")], "next_cursor": "abc"}).encode()
    markets, cursor = parse_gamma_page(body)
    assert cursor == "abc"
    m = markets[0]
    assert m.condition_id == "0xa" and [(t.token_id, t.outcome) for t in m.tokens] == [("0xa1", "Yes"), ("0xa2", "No")]
    assert m.tick_size == Decimal("0.01") and m.tradable and m.end_ms == 1798718400000
    assert parse_gamma_page(json.dumps({"markets": [], "next_cursor": None}).encode()) == ([], None)
    assert parse_gamma_page(json.dumps([gamma_market("0xb")]).encode())[1] is None  # older bare-list form


def test_gamma_mismatched_outcomes_and_bad_bodies_raise() -> None:
    with pytest.raises(SchemaError, match="2 token ids for 3 outcomes"):
        parse_gamma_page(json.dumps({"markets": [gamma_market("0xa", outcomes='["A","B","C"]')]}).encode())
    with pytest.raises(SchemaError, match="clobTokenIds"):
        parse_gamma_page(json.dumps({"markets": [gamma_market("0xa", clobTokenIds="[1,")]}).encode())
    with pytest.raises(SchemaError, match="gamma page"):
        parse_gamma_page(b"<html>")


def test_clob_page_and_its_last_cursor() -> None:
    market = {
        "condition_id": "0xc", "question": "Q", "market_slug": "q", "active": True, "closed": False,
        "archived": False, "enable_order_book": True, "accepting_orders": True, "minimum_tick_size": "0.001",
        "neg_risk": True, "end_date_iso": "2026-12-31T00:00:00Z",
        "tokens": [{"token_id": "11", "outcome": "Yes", "price": 0.5}, {"token_id": "12", "outcome": "No"}],
    }  # fmt: skip
    markets, cursor = parse_clob_page(json.dumps({"data": [market], "next_cursor": "MTAw"}).encode())
    assert cursor == "MTAw" and [t.token_id for t in markets[0].tokens] == ["11", "12"] and markets[0].neg_risk
    assert parse_clob_page(json.dumps({"data": [], "next_cursor": "LTE="}).encode()) == ([], None)


def test_only_tradable_markets_are_subscribed() -> None:
    body = json.dumps({"markets": [
        gamma_market("0xa"), gamma_market("0xb", closed=True), gamma_market("0xc", enableOrderBook=False),
        gamma_market("0xd", archived=True), gamma_market("0xe", active=False),
    ]}).encode()  # fmt: skip
    assert assets_by_condition(parse_gamma_page(body)[0]) == {"0xa": ["0xa1", "0xa2"]}


def test_pager_walks_gamma_keyset_to_the_end() -> None:
    pages = {
        "": {"markets": [gamma_market("0xa")], "next_cursor": "c1"},
        "c1": {"markets": [gamma_market("0xb")], "next_cursor": "c2"},
        "c2": {"markets": [gamma_market("0xc")]},
    }
    pager = Pager("gamma", base_url="http://sim/", limit=2)
    seen = []
    while (url := pager.next_url()) is not None:
        query = parse_qs(urlsplit(url).query)
        assert urlsplit(url).path == "/markets/keyset" and query["closed"] == ["false"] and query["limit"] == ["2"]
        seen += pager.feed(json.dumps(pages[query.get("after_cursor", [""])[0]]).encode())
    assert [m.condition_id for m in seen] == ["0xa", "0xb", "0xc"] and pager.pages == 3


def test_pager_walks_clob_cursors_and_stops_on_a_repeated_one() -> None:
    pager = Pager("clob", base_url="http://sim")
    assert parse_qs(urlsplit(pager.next_url() or "").query)["next_cursor"] == ["MA=="]
    pager.feed(json.dumps({"data": [], "next_cursor": "MTAw"}).encode())
    assert parse_qs(urlsplit(pager.next_url() or "").query)["next_cursor"] == ["MTAw"]
    pager.feed(json.dumps({"data": [], "next_cursor": "MTAw"}).encode())  # the venue repeats itself
    assert pager.next_url() is None
    with pytest.raises(ValueError, match="gamma or clob"):
        Pager("rest")


def test_every_listed_token_gets_its_reference_data() -> None:
    """Walk.refs: one MarketRef per token (the mdpipe market), condition id as market_id, status from the listing,
    the minimum tick as the one price range."""
    from schemas.markets import MarketRef
    from venues.polymarket.discovery import Walk

    walk = Walk("gamma", base_url="http://gamma")
    closed = gamma_market("0xb", closed=True, orderPriceMinTickSize=None, endDate="", outcomes="[]")
    walk.feed(json.dumps({"markets": [gamma_market("0xa"), closed], "next_cursor": None}).encode())
    refs = walk.refs(123)
    assert refs[0] == MarketRef(
        venue="polymarket", ticker="0xa1", event_ticker="will-it", market_id="0xa", title="Will it? (Yes)",
        status="active", close_time_ms=1798718400000, price_ranges='[{"start":"0","end":"1","step":"0.01"}]',
        updated_ns=123,
    )  # fmt: skip
    assert (refs[1].ticker, refs[1].title) == ("0xa2", "Will it? (No)")
    assert [(r.ticker, r.status, r.title, r.price_ranges, r.close_time_ms) for r in refs[2:]] == [
        ("0xb1", "closed", "Will it?", "", None),
        ("0xb2", "closed", "Will it?", "", None),
    ]
    assert walk.groups() == [["0xa1", "0xa2"]]  # only the tradable market is held
