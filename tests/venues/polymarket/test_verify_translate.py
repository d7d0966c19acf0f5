"""The emulator's truth and record in Polymarket's terms (:mod:`venues.polymarket.verify`): what verify expects."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from schemas.events import BookDelta, Trade
from sink.book import Book
from venue_sim.book import Books
from venue_sim.markets import MarketTable
from venue_sim.record import BookCheckpoint, MarketLive, Subscribed
from venue_sim.truth import TruthEvent
from venues import get_venue
from venues.polymarket.verify import Translator, market_index

SEED, M = 3, 4
TICKER = MarketTable.ticker(M)


def test_market_facts_become_one_per_token_and_the_no_tokens_book_is_the_mirror() -> None:
    tr = Translator(SEED)
    yes, no = tr.tokens(TICKER)  # type: ignore[misc]
    assert market_index(TICKER) == M and tr.tokens(MarketTable.event_ticker(M)) is None
    live = MarketLive(TICKER, 0, 1, True, "listed")
    cp = BookCheckpoint(100, 7, TICKER, [("0.40", "10")], [("0.55", "3")])
    sub = Subscribed(1, 1, "market", [yes], 0, 5)
    out = list(tr.record([live, cp, sub]))
    replace = msgspec.structs.replace
    assert out == [
        replace(live, market=yes),
        replace(live, market=no),
        BookCheckpoint(100, 7, yes, [("0.40", "10")], [("0.55", "3")]),
        BookCheckpoint(100, 7, no, [("0.55", "3")], [("0.40", "10")]),
        sub,
    ]


def test_a_delta_is_expected_on_both_tokens_with_the_levels_new_size_and_a_trade_on_both_with_books() -> None:
    tr = Translator(SEED)
    yes, no = tr.tokens(TICKER)  # type: ignore[misc]
    list(tr.record([Subscribed(1, 1, "market", [yes, no], 0, 5)]))
    books = Books(SEED)
    books.grow(M + 1)
    before = books.peek(M).yes.get(43, 0)  # hundredths
    delta = b'{"market_ticker":"x","price_dollars":"0.4300","delta_fp":"5.00","side":"yes","ts":1}'
    trade = (
        b'{"trade_id":"t1","yes_price_dollars":"0.43","no_price_dollars":"0.57","count_fp":"2.00","taker_side":"yes"}'
    )
    events = [
        TruthEvent(1, "delta", TICKER, 1_000, 10, delta),
        TruthEvent(2, "ticker", TICKER, 1_001, 11, b"{}"),  # no market-channel counterpart
        TruthEvent(3, "trade", TICKER, 1_002, 12, trade),
    ]
    sent: list[tuple[str, Book]] = []
    items = list(tr.truth(events, lambda market, book: sent.append((market, book))))
    kinds = [(ev.id, kind, market) for ev, kind, market, _ in items]
    assert kinds == [(1, "delta", yes), (1, "delta", no), (3, "trade", yes), (3, "trade", no)]
    new_size = Decimal(before).scaleb(-2) + 5
    d_yes, d_no = items[0][3], items[1][3]
    assert isinstance(d_yes, BookDelta) and isinstance(d_no, BookDelta)
    assert (d_yes.side, d_yes.price, d_yes.delta, d_yes.ts_ms) == ("yes", Decimal("0.43"), new_size, 1_000)
    assert (d_no.side, d_no.price, d_no.delta) == ("no", Decimal("0.43"), new_size)  # the mirror's ask, as a NO bid
    t_yes, t_no = items[2][3], items[3][3]
    assert isinstance(t_yes, Trade) and isinstance(t_no, Trade)
    assert (t_yes.yes_price, t_yes.count, t_yes.taker_side) == (Decimal("0.43"), Decimal(2), "yes")
    assert (t_no.yes_price, t_no.taker_side) == (Decimal("0.57"), "no")
    # books sent: both tokens on subscribing (before event 1), both after the trade
    assert [m for m, _ in sent] == [yes, no, yes, no]
    after_trade = sent[2][1].normalised()
    assert dict(after_trade[0])[Decimal("0.43")] == new_size  # the YES token's book holds the change
    assert sent[3][1].normalised() == (after_trade[1], after_trade[0])  # the NO token's is its mirror


def test_the_venue_gives_verify_its_translator_rule_and_trade_identity() -> None:
    venue = get_venue("polymarket")
    assert isinstance(venue.truth_translator(SEED), Translator)
    assert venue.book_rule() is None  # its delta rows say that they replace a level (the sink's rule reads it)
    assert not venue.trade_ids and not venue.needs_auth
    assert "redeliver" in venue.silent_faults
