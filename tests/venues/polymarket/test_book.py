"""Polymarket books: a price_change replaces a level; a book rebuilt from stored rows (snapshot + the changes it does
not contain, in (ms, ordinal) order, rows in any storage order) equals the token's live book."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sink.book import Book, DeltaRow, SnapshotRow
from venues.polymarket import wire
from venues.polymarket.book import TokenBook, apply_replace, book_at
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload, message_to_event

D = Decimal


def _entry(price: str, size: str, side: str, best_bid: str | None = None, best_ask: str | None = None) -> Any:
    body: dict[str, Any] = {"asset_id": "1", "price": price, "size": size, "side": side}
    if best_bid is not None:
        body.update(best_bid=best_bid, best_ask=best_ask)
    return wire.decode("price_change", change_payload("0x", 1, json.dumps(body).encode())).price_changes[0]


def test_a_change_replaces_the_level_and_zero_removes_it() -> None:
    book = TokenBook()
    book.reset(wire.decode("book", b'{"asset_id":"1","timestamp":"1","bids":[{"price":".48","size":"30"}],"asks":[]}'))
    book.apply(_entry("0.480", "5", "BUY"))
    assert book.bids == {D("0.48"): D(5)}
    book.apply(_entry("0.48", "0", "BUY"))
    assert book.bids == {} and book.best_bid is None
    rows = Book()
    apply_replace(rows, DeltaRow(1, "p:a:1", "yes", D("0.48"), D(7)))
    apply_replace(rows, DeltaRow(1, "p:b:2", "yes", D("0.480"), D(3)))
    assert rows.yes == {D("0.48"): D(3)}


def test_best_bid_ask_cross_check() -> None:
    book = TokenBook()
    book.apply(_entry("0.5", "200", "BUY", "0.5", "1"))  # empty ask side is reported as 1 [doc example]
    assert book.agrees(_entry("0.5", "200", "BUY", "0.5", "1"))
    assert not book.agrees(_entry("0.5", "200", "BUY", "0.49", "1"))
    assert TokenBook().agrees(_entry("0.5", "0", "SELL", "0", "1"))  # empty bid side is reported as 0


@st.composite
def change_streams(draw: Any) -> list[tuple[int, str, str, str]]:
    """(ts, side, price, size) changes of one token; a level changes several times in one ms."""
    ts = 1_000
    out = []
    for _ in range(draw(st.integers(0, 50))):
        ts += draw(st.sampled_from([0, 0, 1, 30]))
        out.append(
            (ts, draw(st.sampled_from(["BUY", "SELL"])), draw(st.sampled_from(["0.40", ".4", "0.41", "0.6"])),
             draw(st.sampled_from(["0", "5", "12.50"])))
        )  # fmt: skip
    return out


@settings(max_examples=300, deadline=None)
@given(change_streams(), st.data())
def test_rebuilt_book_equals_the_live_book(changes: list[tuple[int, str, str, str]], data: Any) -> None:
    keyer = PolymarketKeyer()
    live = TokenBook()
    rows: list[DeltaRow] = []
    cut = data.draw(st.integers(0, len(changes)))
    snapshot: SnapshotRow | None = None
    start = '{"asset_id":"1","timestamp":"999","bids":[{"price":"0.3","size":"1"}],"asks":[{"price":"0.7","size":"2"}]}'
    live.reset(wire.decode("book", start.encode()))
    for i, (ts, side, price, size) in enumerate([*changes, (10**9, "BUY", "0.1", "0")]):
        if i == cut:  # the venue sends a book here: it holds every change so far, stamped with the last one's ms
            book_ts = changes[i - 1][0] if i else 999
            body = {
                "asset_id": "1", "timestamp": str(book_ts),
                "bids": [{"price": str(p), "size": str(s)} for p, s in live.bids.items()],
                "asks": [{"price": str(p), "size": str(s)} for p, s in live.asks.items()],
            }  # fmt: skip
            ev = message_to_event("snapshot", json.dumps(body).encode(), market="1", event_key="b", recv_ns=0,
                                  gatherer="g")  # fmt: skip
            # the changes in the book's ms that follow it become its after_keys (what the session's placement yields)
            snapshot = SnapshotRow(book_ts, "b", ev.yes, ev.no, frozenset())  # type: ignore[union-attr]
        if i == len(changes):
            break
        entry = json.dumps({"asset_id": "1", "price": price, "size": size, "side": side}).encode()
        payload = change_payload("0x", ts, entry)
        decoded = wire.decode("price_change", payload).price_changes[0]
        key, ordinal = keyer.change(ts, decoded)
        live.apply(decoded)
        ev = message_to_event("delta", payload, market="1", event_key=key, recv_ns=0, gatherer="g", ordinal=ordinal)
        rows.append(DeltaRow(ev.ts_ms, key, ev.side, ev.price, ev.delta, True, ev.ordinal))  # type: ignore[union-attr]
        if snapshot is not None and ts == snapshot.ts_ms:
            snapshot = SnapshotRow(snapshot.ts_ms, "b", snapshot.yes, snapshot.no, snapshot.after_keys | {key})
    assert snapshot is not None
    random.Random(len(rows)).shuffle(rows)  # storage order is not venue order
    rebuilt = book_at([snapshot], rows, 10**9)
    assert rebuilt is not None
    want = Book.of(
        sorted(live.bids.items()), sorted((1 - p, s) for p, s in live.asks.items())
    )  # the normalisation's ladders
    assert rebuilt.normalised() == want.normalised()
