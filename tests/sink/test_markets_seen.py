"""The sink upserts a market reference once per change (sink.markets_seen): the other gatherers' copies (the same
values, their own times), in later batches, leave the row as the first copy stored it; a changed reference is
stored; a reference whose transaction rolled back is not taken as stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from mdpipe.config import PostgresConfig
from schemas import MarketRef, encode_market
from sink.batch import Batch, Source
from sink.markets_seen import MarketsSeen
from sink.migrate import migrate
from sink.store import Store

NS = 1_767_225_600_000_000_000
_ROW = "SELECT title, status, updated_ns, loaded_at FROM markets WHERE venue = 'va' AND ticker = %s"


def _keep(dead: object) -> None:
    """No dead letters expected."""


def _batch(refs: list[MarketRef], undecodable: bool = False) -> Batch:
    batch = Batch()
    sources = [Source("markets", 0, i, encode_market(r)) for i, r in enumerate(refs)]
    if undecodable:
        sources.append(Source("markets", 0, len(refs), b"\xff not a market"))
    batch.add_many(sources)
    return batch


@pytest.fixture
def db(make_database: Callable[[], str]) -> Iterator[tuple[str, Store]]:
    """A migrated database and a store writing to it."""
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    store = Store(dsn, "g-markets-seen")
    yield dsn, store
    store.close()


def _row(dsn: str, ticker: str) -> tuple[object, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(_ROW, (ticker,)).fetchone()


def test_remembers_per_market_and_starts_again_past_its_limit() -> None:
    seen = MarketsSeen(limit=2)
    assert seen.changed("a", (1,))
    seen.remember([("a", (1,)), ("b", (2,))])
    assert not seen.changed("a", (1,)) and not seen.changed("b", (2,)) and seen.changed("a", (9,))
    seen.remember([("c", (3,))])  # a third market: full, so it starts again with this one
    assert len(seen) == 1 and seen.changed("a", (1,)) and not seen.changed("c", (3,))
    seen.forget()
    assert len(seen) == 0 and seen.changed("c", (3,))


@pytest.mark.integration
def test_identical_copies_are_stored_once_and_changes_every_time(db: tuple[str, Store]) -> None:
    dsn, store = db
    first = store.write(_batch([MarketRef(venue="va", ticker="M1", title="t", status="open", updated_ns=NS)]), _keep)
    stored = _row(dsn, "M1")
    for later_ns in (NS + 5, NS + 9):  # the other two gatherers' copies (their own times), each in its own batch
        copy = MarketRef(venue="va", ticker="M1", title="t", status="open", updated_ns=later_ns)
        again = store.write(_batch([copy]), _keep)
        assert (again.markets, again.markets_unchanged) == (0, 1)
    assert _row(dsn, "M1") == stored  # the first copy's time and load time
    closed = MarketRef(venue="va", ticker="M1", title="t", status="closed", updated_ns=NS + 1)
    changed = store.write(_batch([closed]), _keep)
    assert (first.markets, changed.markets, changed.markets_unchanged) == (1, 1, 0)
    row = _row(dsn, "M1")
    assert row is not None and row[:3] == ("t", "closed", NS + 1)


@pytest.mark.integration
def test_a_reference_rolled_back_is_stored_by_its_next_copy(db: tuple[str, Store]) -> None:
    dsn, store = db
    ref = MarketRef(venue="va", ticker="M2", title="t", status="open", updated_ns=NS)

    def refuse(dead: object) -> None:  # runs inside the transaction, before the commit
        raise RuntimeError("dead-letter topic unreachable")

    with pytest.raises(RuntimeError):
        store.write(_batch([ref], undecodable=True), refuse)
    assert _row(dsn, "M2") is None  # rolled back with the batch
    again = store.write(_batch([ref]), _keep)
    assert (again.markets, again.markets_unchanged) == (1, 0)
    row = _row(dsn, "M2")
    assert row is not None and row[:3] == ("t", "open", NS)
