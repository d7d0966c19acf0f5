"""Polymarket market discovery: parsers of the Gamma and CLOB REST listings and the page walk, pure logic.

Sources (tags as in ``venues.polymarket.wire``):

- **Gamma** ``https://gamma-api.polymarket.com`` (no auth): ``GET /markets/keyset?closed=false&limit=N`` then
  ``&after_cursor=<next_cursor>`` -> ``{"markets":[..],"next_cursor":str|null}``; absent, null or empty = last page
  [sdk: Polymarket/py-sdk ``gamma.py``; the ``after_cursor`` name from 3p code]. A market has ``conditionId``,
  ``question``, ``slug``, ``outcomes`` and ``clobTokenIds`` (both JSON arrays ENCODED AS STRINGS, same order),
  ``active``, ``closed``, ``archived``, ``enableOrderBook``, ``acceptingOrders``, ``orderPriceMinTickSize``,
  ``negRisk``, ``endDate`` [doc]. Rate limit: ``/markets`` 300 requests / 10 s [doc rate-limits].
- **CLOB** ``https://clob.polymarket.com`` (public reads): ``GET /markets?next_cursor=MA==`` ->
  ``{"data":[..],"next_cursor":..}``; the last page's ``next_cursor`` is ``"LTE="`` [3p code]; a market has
  ``condition_id``, ``question``, ``market_slug``, ``tokens[{token_id, outcome}]``, ``active``, ``closed``,
  ``archived``, ``accepting_orders``, ``enable_order_book``, ``minimum_tick_size``, ``neg_risk``, ``end_date_iso``
  [doc clients/methods-public]. Limit: 9000 requests / 10 s general [doc].

A market is recorded when it is ``active``, not ``closed`` or ``archived`` and has an order book
(``enableOrderBook`` / ``enable_order_book``) [doc P5 in venues.md]. Its tokens are the assets to subscribe; both
tokens of one condition should go to the same connection (:func:`assets_by_condition`), so that a ``price_change``
carrying entries of both is recorded once.

Reference data (:meth:`Walk.refs`, published by the gatherer to the ``markets`` topic where it changed): one
:class:`schemas.markets.MarketRef` per TOKEN of every listed market (a token is an mdpipe market, as in
:mod:`venues.polymarket.normalise`): ``ticker`` = token id, ``market_id`` = condition id, ``event_ticker`` = the
market's slug, ``title`` = ``question (outcome)``, ``status`` ``active`` (tradable: recorded), ``closed``,
``archived`` or ``inactive`` (listed, not active or without an order book), ``close_time_ms`` = ``endDate``, and
``price_ranges`` = ``[{"start":"0","end":"1","step":<minimum tick>}]`` when the tick is listed (the venue changes it
later with ``tick_size_change``, a lifecycle event) [guess: field choice; the venue has no open time in the listing].

The walk (:class:`Pager`) is sans-I/O: it says which request comes next and parses each body; the I/O edge fetches
(the gatherer's paced REST client, through a hook that returns the body of a GET, see the report) and feeds bodies
back. Anything malformed raises ``SchemaError`` naming the listing.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass
from decimal import Decimal

import msgspec

from schemas.codec import SchemaError
from schemas.markets import MarketRef
from venues.polymarket import NAME
from venues.polymarket.numbers import norm

__all__ = [
    "CLOB_FIRST_CURSOR",
    "CLOB_LAST_CURSOR",
    "CLOB_URL",
    "GAMMA_URL",
    "Market",
    "Pager",
    "Token",
    "Walk",
    "assets_by_condition",
    "parse_clob_page",
    "parse_gamma_page",
    "token_refs",
]

GAMMA_URL = "https://gamma-api.polymarket.com"
CLOB_URL = "https://clob.polymarket.com"
CLOB_FIRST_CURSOR = "MA=="  # base64 "0"
CLOB_LAST_CURSOR = "LTE="  # base64 "-1"


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    outcome: str = ""


@dataclass(frozen=True, slots=True)
class Market:
    """One condition (a binary question) and its tokens, in the venue's outcome order (YES first)."""

    condition_id: str
    question: str = ""
    slug: str = ""
    tokens: tuple[Token, ...] = ()
    active: bool = False
    closed: bool = False
    archived: bool = False
    order_book: bool = False
    accepting_orders: bool = False
    tick_size: Decimal | None = None
    neg_risk: bool = False
    end_ms: int | None = None

    @property
    def tradable(self) -> bool:
        return self.active and not self.closed and not self.archived and self.order_book


class _Gamma(msgspec.Struct):
    conditionId: str  # the venue's field names (camelCase)
    question: str = ""
    slug: str = ""
    outcomes: str | list[str] = "[]"
    clobTokenIds: str | list[str] = "[]"
    active: bool = False
    closed: bool = False
    archived: bool = False
    enableOrderBook: bool = False
    acceptingOrders: bool = False
    orderPriceMinTickSize: Decimal | None = None
    negRisk: bool = False
    endDate: str = ""


class _GammaPage(msgspec.Struct):
    markets: list[_Gamma] = []
    next_cursor: str | None = None


class _ClobToken(msgspec.Struct):
    token_id: str
    outcome: str = ""


class _Clob(msgspec.Struct):
    condition_id: str
    question: str = ""
    market_slug: str = ""
    tokens: list[_ClobToken] = []
    active: bool = False
    closed: bool = False
    archived: bool = False
    enable_order_book: bool = False
    accepting_orders: bool = False
    minimum_tick_size: Decimal | None = None
    neg_risk: bool = False
    end_date_iso: str | None = ""


class _ClobPage(msgspec.Struct):
    data: list[_Clob] = []
    next_cursor: str | None = None


_gamma_page = msgspec.json.Decoder(_GammaPage, strict=False)
_gamma_list = msgspec.json.Decoder(list[_Gamma], strict=False)
_clob_page = msgspec.json.Decoder(_ClobPage, strict=False)
_strings = msgspec.json.Decoder(list[str], strict=False)


def _string_list(value: str | list[str], what: str) -> list[str]:
    if isinstance(value, list):
        return value
    try:
        return _strings.decode(value or "[]")
    except msgspec.DecodeError as exc:
        raise SchemaError(f"polymarket gamma {what}: {exc}") from None


def _iso_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)


def _from_gamma(g: _Gamma) -> Market:
    ids = _string_list(g.clobTokenIds, "clobTokenIds")
    outcomes = _string_list(g.outcomes, "outcomes")
    if outcomes and len(outcomes) != len(ids):
        raise SchemaError(f"polymarket gamma {g.conditionId}: {len(ids)} token ids for {len(outcomes)} outcomes")
    tokens = tuple(Token(t, outcomes[i] if outcomes else "") for i, t in enumerate(ids))
    return Market(
        g.conditionId, g.question, g.slug, tokens, g.active, g.closed, g.archived, g.enableOrderBook,
        g.acceptingOrders, g.orderPriceMinTickSize, g.negRisk, _iso_ms(g.endDate),
    )  # fmt: skip


def parse_gamma_page(body: bytes) -> tuple[list[Market], str | None]:
    """Markets of one Gamma page and the cursor of the next (None: last page). Accepts the keyset object and the
    older bare list (``/markets?offset=``: no cursor)."""
    try:
        if body.lstrip()[:1] == b"[":
            return [_from_gamma(g) for g in _gamma_list.decode(body)], None
        page = _gamma_page.decode(body)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"polymarket gamma page: {exc}") from None
    return [_from_gamma(g) for g in page.markets], page.next_cursor or None


def _from_clob(c: _Clob) -> Market:
    tokens = tuple(Token(t.token_id, t.outcome) for t in c.tokens)
    return Market(
        c.condition_id, c.question, c.market_slug, tokens, c.active, c.closed, c.archived, c.enable_order_book,
        c.accepting_orders, c.minimum_tick_size, c.neg_risk, _iso_ms(c.end_date_iso),
    )  # fmt: skip


def parse_clob_page(body: bytes) -> tuple[list[Market], str | None]:
    """Markets of one CLOB ``/markets`` page and the next cursor (None after ``LTE=``)."""
    try:
        page = _clob_page.decode(body)
    except msgspec.DecodeError as exc:
        raise SchemaError(f"polymarket clob page: {exc}") from None
    markets = [_from_clob(c) for c in page.data]
    cursor = page.next_cursor
    return markets, None if not cursor or cursor == CLOB_LAST_CURSOR else cursor


class Pager:
    """The requests of one listing walk and their parsing (sans I/O).

    ``source`` ``gamma`` (keyset, ``closed=false``) or ``clob``. Use: ``url = pager.next_url()`` until it returns
    None; give each response body to :meth:`feed`, which returns that page's markets. A cursor seen before ends the
    walk (a venue looping on one cursor must not keep discovery busy forever)."""

    def __init__(self, source: str = "gamma", *, base_url: str = "", limit: int = 500) -> None:
        if source not in ("gamma", "clob"):
            raise ValueError(f"polymarket discovery source {source!r}: expected gamma or clob")
        self.source = source
        self.base_url = (base_url or (GAMMA_URL if source == "gamma" else CLOB_URL)).rstrip("/")
        self.limit = limit
        self._cursor: str | None = "" if source == "gamma" else CLOB_FIRST_CURSOR
        self._seen: set[str] = set()
        self.pages = 0
        self.done = False

    def next_url(self) -> str | None:
        if self.done:
            return None
        if self.source == "gamma":
            query = {"closed": "false", "limit": str(self.limit)}
            if self._cursor:
                query["after_cursor"] = self._cursor
            return f"{self.base_url}/markets/keyset?{urllib.parse.urlencode(query)}"
        return f"{self.base_url}/markets?{urllib.parse.urlencode({'next_cursor': self._cursor or ''})}"

    def feed(self, body: bytes) -> list[Market]:
        markets, cursor = (parse_gamma_page if self.source == "gamma" else parse_clob_page)(body)
        self.pages += 1
        if cursor is None or cursor in self._seen:
            self.done = True
        else:
            self._seen.add(cursor)
            self._cursor = cursor
        return markets


def assets_by_condition(markets: list[Market]) -> dict[str, list[str]]:
    """Token ids to subscribe, grouped by condition (tradable markets only; venue outcome order)."""
    return {m.condition_id: [t.token_id for t in m.tokens] for m in markets if m.tradable and m.tokens}


def _status(m: Market) -> str:
    if m.tradable:
        return "active"
    return "closed" if m.closed else "archived" if m.archived else "inactive"


def token_refs(m: Market, updated_ns: int) -> list[MarketRef]:
    """The reference data of each token of ``m`` (module docstring)."""
    ranges = "" if m.tick_size is None else _ranges.encode([{"start": "0", "end": "1", "step": norm(m.tick_size)}])
    return [
        MarketRef(
            venue=NAME,
            ticker=t.token_id,
            event_ticker=m.slug,
            market_id=m.condition_id,
            title=f"{m.question} ({t.outcome})" if t.outcome else m.question,
            status=_status(m),
            close_time_ms=m.end_ms,
            price_ranges=ranges.decode() if ranges else "",
            updated_ns=updated_ns,
        )
        for t in m.tokens
    ]


_ranges = msgspec.json.Encoder()


class Walk:
    """One discovery pass as the gatherer drives it (:class:`venues.interface.Discovery`): a :class:`Pager` walk
    whose :meth:`groups` are the tradable conditions' tokens, one group per condition (both tokens on one
    connection), in listing order. A token listed twice is held once, in its first group."""

    kind = "walk"

    def __init__(self, source: str = "gamma", *, base_url: str = "", limit: int = 500) -> None:
        self.pager = Pager(source, base_url=base_url, limit=limit)
        self.markets: list[Market] = []

    def next_url(self) -> str | None:
        return self.pager.next_url()

    def feed(self, body: bytes) -> list[Market]:
        markets = self.pager.feed(body)
        self.markets += markets
        return markets

    def refs(self, updated_ns: int) -> list[MarketRef]:
        """The reference data of every token of every listed market (tradable or not), in listing order."""
        return [ref for m in self.markets for ref in token_refs(m, updated_ns)]

    def groups(self) -> list[list[str]]:
        seen: set[str] = set()
        out = []
        for tokens in assets_by_condition(self.markets).values():
            group = [t for t in tokens if t not in seen]
            seen.update(group)
            if group:
                out.append(group)
        return out
