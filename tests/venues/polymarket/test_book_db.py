"""Polymarket books rebuilt from the database and by sink.book equal the venue's own rebuild (venues.polymarket.book)
and the live book: random change streams (several changes of one level in one ms), normalised
(venues.polymarket.normalise, keys from PolymarketKeyer), encoded on the ``events`` wire, loaded by the sink's store
(C or Python row builder, binary COPY) in shuffled order, then read back with the SQL ``book_at`` and `mdpipe book`.
The TimescaleDB mode runs the same check against tests/tsdb's database."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdpipe.cli import main
from mdpipe.config import PostgresConfig
from schemas.events import BookDelta, BookSnapshot, Event, encode_event
from sink import book as pybook
from sink.batch import Batch, Source
from sink.book_db import book_at as sql_book_at
from sink.migrate import migrate
from sink.store import Store
from venues.polymarket import NAME, wire
from venues.polymarket.book import TokenBook
from venues.polymarket.book import book_at as venue_book_at
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload, message_to_event

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000
_markets = itertools.count()

Stream = list[tuple[int, str, str, str]]  # (ms after T0, side, price, size)


@st.composite
def change_streams(draw: Any) -> tuple[Stream, int, list[int]]:
    """Changes of one token (levels changed several times in one ms), where the venue's book is sent (index), and
    the times (ms after T0) to rebuild at."""
    ms = 0
    out: Stream = []
    for _ in range(draw(st.integers(0, 40))):
        ms += draw(st.sampled_from([0, 0, 0, 1, 7]))
        side = draw(st.sampled_from(["BUY", "SELL"]))
        price = draw(st.sampled_from(["0.40", ".4", "0.41", "0.6"]))
        out.append((ms, side, price, draw(st.sampled_from(["0", "5", "12.50", "3"]))))
    cut = draw(st.integers(0, len(out)))
    times = draw(st.lists(st.integers(0, ms + 2), min_size=1, max_size=5))
    return out, cut, times


def _events(market: str, changes: Stream, cut: int) -> tuple[list[Event], dict[int, Any]]:
    """The normalised events of a token's stream (a book sent before change ``cut``, placed in the change stream as
    the gatherer places it), and the live book's ladders after each ms."""
    keyer = PolymarketKeyer()
    live = TokenBook()
    start = {"asset_id": market, "timestamp": str(T0 - 1), "bids": [{"price": "0.4", "size": "1"}],
             "asks": [{"price": "0.6", "size": "2"}]}  # fmt: skip
    live.reset(wire.decode("book", json.dumps(start).encode()))
    common = {"market": market, "recv_ns": T0 * 1_000_000, "gatherer": "g1"}
    events: list[Event] = [message_to_event("snapshot", json.dumps(start).encode(), event_key=f"b0:{market}", **common)]
    placed: BookSnapshot | None = None
    states: dict[int, Any] = {}
    for i, (ms, side, price, size) in enumerate(changes):
        if i == cut:  # the venue sends a book here: it holds every change so far
            at = T0 + (changes[i - 1][0] if i else -1)
            body = {"asset_id": market, "timestamp": str(at),
                    "bids": [{"price": str(p), "size": str(s)} for p, s in live.bids.items()],
                    "asks": [{"price": str(p), "size": str(s)} for p, s in live.asks.items()]}  # fmt: skip
            ev = message_to_event("snapshot", json.dumps(body).encode(), event_key=f"b1:{market}", **common)
            assert isinstance(ev, BookSnapshot)
            placed = ev
            events.append(ev)
        payload = change_payload("0xc", T0 + ms, json.dumps({"asset_id": market, "price": price, "size": size,
                                                              "side": side}).encode())  # fmt: skip
        entry = wire.decode("price_change", payload).price_changes[0]
        key, ordinal = keyer.change(T0 + ms, entry)
        live.apply(entry)
        states[T0 + ms] = _ladders(live)
        events.append(message_to_event("delta", payload, event_key=key, ordinal=ordinal, **common))
        if placed is not None and T0 + ms == placed.ts_ms:  # changes in the book's ms after it: its after_keys
            placed.after_keys.append(key)
    return events, states


def _ladders(live: TokenBook) -> Any:
    return pybook.Book.of(sorted(live.bids.items()), sorted((1 - p, s) for p, s in live.asks.items())).normalised()


def _rows(events: list[Event]) -> tuple[list[pybook.SnapshotRow], list[pybook.DeltaRow]]:
    snaps = [
        pybook.SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys))
        for e in events
        if isinstance(e, BookSnapshot)
    ]
    deltas = [
        pybook.DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta, e.replaces, e.ordinal)
        for e in events
        if isinstance(e, BookDelta)
    ]
    return snaps, deltas


def load(dsn: str, events: list[Event]) -> None:
    """``events`` through the sink's store, in shuffled order (storage order is not venue order)."""
    shuffled = list(events)
    random.Random(len(events)).shuffle(shuffled)
    store = Store(dsn, "pmbook")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(shuffled)])
        result = store.write(batch, lambda dead: None)
        assert not result.dead and not result.duplicates
    finally:
        store.close()


def _db_book(conn: psycopg.Connection[Any], market: str, at_ms: int) -> Any:
    found = sql_book_at(conn, market, at_ms, NAME)
    assert found is not None and found.venue == NAME
    return tuple(tuple(sorted(ladder.items())) for ladder in (found.book.yes, found.book.no))


def check_books(dsn: str, history: tuple[Stream, int, list[int]]) -> None:
    changes, cut, times = history
    market = f"9{next(_markets):06d}"
    events, states = _events(market, changes, cut)
    load(dsn, events)
    snaps, deltas = _rows(events)
    random.Random(len(deltas)).shuffle(deltas)  # storage order is not venue order
    with psycopg.connect(dsn) as conn:
        for t in [T0 + ms for ms in times] + ([T0 + changes[-1][0]] if changes else []):
            venue = venue_book_at(snaps, deltas, t)
            assert venue is not None
            want = venue.normalised()
            live = [state for ms, state in states.items() if ms <= t]
            if live:  # the live book after the last change at or before t
                assert want == live[-1], t
            python = pybook.book_at(snaps, deltas, t)
            assert python is not None and python.normalised() == want, t
            assert _db_book(conn, market, t) == want, t


@pytest.fixture(scope="module")
def pm_db(make_database: Callable[[], str]) -> Iterator[str]:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    yield dsn


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=change_streams())
def test_sql_and_python_books_equal_the_venue_rebuild(pm_db: str, history: tuple[Stream, int, list[int]]) -> None:
    check_books(pm_db, history)


def test_mdpipe_book_prints_the_replaced_levels(
    pm_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """Three changes of one level in one ms: the book shows the last one's size (not their sum)."""
    changes: Stream = [(5, "BUY", "0.45", "10"), (5, "BUY", "0.45", "4"), (5, "BUY", "0.450", "7"),
                       (6, "SELL", "0.6", "0")]  # fmt: skip
    market = f"9{next(_markets):06d}"
    events, _ = _events(market, changes, 0)
    load(pm_db, events)
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", pm_db)
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    assert main(["book", "--market", market, "--venue", NAME, "--at", str(T0 + 6), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["yes"] == [["0.45", "7"], ["0.4", "1"]] and got["no"] == []
