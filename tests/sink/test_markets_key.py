"""The markets table keyed by (venue, ticker) (migration 0011): a database at 0010 with market rows moves forward with
every row kept; afterwards two venues' markets of the same name are two rows, each upserted latest-first on its own,
through the sink's batch and store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from mdpipe.config import PostgresConfig
from schemas import MarketRef, encode_market
from sink import migrate as migrate_module
from sink.batch import Batch, Source
from sink.store import Store

PLAIN = PostgresConfig(timescaledb="off")
NS = 1_767_225_600_000_000_000
_ROWS = "SELECT venue, ticker, title, status, updated_ns FROM markets ORDER BY venue, ticker"


def _batch(refs: list[MarketRef]) -> Batch:
    batch = Batch()
    batch.add_many([Source("markets", 0, i, encode_market(r)) for i, r in enumerate(refs)])
    return batch


def _write(dsn: str, refs: list[MarketRef]) -> None:
    store = Store(dsn, "g-markets-key")
    try:
        result = store.write(_batch(refs), lambda dead: None)
        assert not result.dead and result.markets == len({(r.venue, r.ticker) for r in refs})
    finally:
        store.close()


def test_a_batch_keeps_the_same_name_at_two_venues_apart() -> None:
    refs = [
        MarketRef(venue="va", ticker="M1", title="a old", updated_ns=1),
        MarketRef(venue="vb", ticker="M1", title="b", updated_ns=2),
        MarketRef(venue="va", ticker="M1", title="a new", updated_ns=3),
    ]
    batch = _batch(refs)
    assert {k: ref.title for k, (ref, _) in batch.markets.items()} == {("va", "M1"): "a new", ("vb", "M1"): "b"}
    other = _batch([MarketRef(venue="vb", ticker="M1", title="b newer", updated_ns=9)])
    batch.absorb(other)
    assert batch.markets[("vb", "M1")][0].title == "b newer" and batch.markets[("va", "M1")][0].title == "a new"


@pytest.mark.integration
def test_0011_keeps_the_rows_and_keys_markets_by_venue(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = make_database()
    real = migrate_module.discover
    with monkeypatch.context() as patch:
        patch.setattr(migrate_module, "discover", lambda *a: [m for m in real(*a) if m.version <= 10])
        assert migrate_module.migrate(dsn, PLAIN).applied == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    with psycopg.connect(dsn) as conn:  # rows as the sink of 0010 upserted them (one venue: 0008 requires it)
        conn.execute(
            "INSERT INTO markets (ticker, venue, title, status, updated_at, updated_ns)"
            " SELECT 'M' || i, 'va', 'title ' || i, 'open', now(), i FROM generate_series(1, 50) AS i"
        )
        before = conn.execute(_ROWS).fetchall()
    assert migrate_module.migrate(dsn, PLAIN, "va").applied == [11, 12, 13]
    assert migrate_module.migrate(dsn, PLAIN, "va").applied == []  # idempotent
    with psycopg.connect(dsn) as conn:
        assert conn.execute(_ROWS).fetchall() == before  # every row, unchanged
        key = conn.execute(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_constraint c"
            " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
            " WHERE c.conrelid = 'markets'::regclass AND c.contype = 'p'"
        ).fetchone()
    assert key is not None and key[0] == ["venue", "ticker"]

    # the same name at another venue is a row of its own; each is upserted latest-first on its own
    _write(dsn, [MarketRef(venue="vb", ticker="M1", title="other venue", status="open", updated_ns=NS)])
    _write(dsn, [MarketRef(venue="va", ticker="M1", title="newer", status="closed", updated_ns=NS + 1)])
    _write(dsn, [MarketRef(venue="vb", ticker="M1", title="stale", status="open", updated_ns=NS - 1)])
    with psycopg.connect(dsn) as conn:
        rows: list[Any] = conn.execute(_ROWS + " LIMIT 1").fetchall()
        assert rows == [("va", "M1", "newer", "closed", NS + 1)]
        assert conn.execute("SELECT title, updated_ns FROM markets WHERE venue = 'vb'").fetchall() == [
            ("other venue", NS)
        ]
        assert conn.execute("SELECT count(*) FROM markets").fetchone() == (51,)
