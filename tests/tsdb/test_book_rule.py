"""The book rule of migration 0010 in TimescaleDB mode: book_at over hypertables equals sink.book's rebuild on random
histories of additive and replacing deltas (tests/sink/test_book_sql.py's histories), each under a venue name of its
own in a day of its own of the shared database (2026-03-15), also after the chunk is compressed."""

from __future__ import annotations

import itertools
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sink import book as pybook
from sink.book_db import book_at
from tests.sink.test_book_sql import T0, histories

pytestmark = pytest.mark.integration
SHIFT = 73 * 86_400_000  # test_book_sql's T0 (2026-01-01) moved to 2026-03-15
_SNAP = """INSERT INTO orderbook_snapshots (ts, venue, market, event_key, gatherer, received_at, yes_prices, yes_counts,
    no_prices, no_counts, after_keys)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s, %s, %s)"""
_DELTA = """INSERT INTO orderbook_deltas (ts, venue, market, event_key, gatherer, received_at, side, price, delta,
    replaces, ordinal)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s, %s, %s)"""
MARKET = "RULE-1"
_venues = itertools.count()


def _store(conn: psycopg.Connection[Any], venue: str, snaps: list[Any], deltas: list[Any]) -> None:
    """The rows under a venue name of their own (the unique keys do not hold the market)."""
    with conn.cursor() as cur:
        for s in snaps:
            cur.execute(
                _SNAP,
                (s.ts_ms + SHIFT, venue, MARKET, s.event_key, [p for p, _ in s.yes], [c for _, c in s.yes],
                 [p for p, _ in s.no], [c for _, c in s.no], sorted(s.after_keys)),
            )  # fmt: skip
        for d in deltas:
            cur.execute(
                _DELTA,
                (d.ts_ms + SHIFT, venue, MARKET, d.event_key, d.side, d.price, d.delta, d.replaces, d.ordinal),
            )


def _check(conn: psycopg.Connection[Any], venue: str, snaps: list[Any], deltas: list[Any], times: list[int]) -> None:
    for t in times:
        want = pybook.book_at(snaps, deltas, t)
        got = book_at(conn, MARKET, t + SHIFT, venue)
        if want is None:
            assert got is None, t
        else:
            assert got is not None and got.book.normalised() == want.normalised(), t


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(st.booleans()))
def test_book_at_on_hypertables_follows_each_rows_rule(tsdb_dsn: str, history: Any) -> None:
    snaps, deltas, times = history
    venue = f"tsdb-rule-{next(_venues)}"
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        _store(conn, venue, snaps, deltas)
        _check(conn, venue, snaps, deltas, times)


def test_replacing_deltas_in_a_compressed_chunk(tsdb_dsn: str) -> None:
    snaps = [pybook.SnapshotRow(T0, "s", [], [])]
    deltas = [
        pybook.DeltaRow(T0 + 1, "b", "yes", D("0.4"), D(5), True, 2),
        pybook.DeltaRow(T0 + 1, "a", "yes", D("0.4"), D(9), True, 1),
        pybook.DeltaRow(T0 + 1, "c", "yes", D("0.4"), D(1), False, 0),
        pybook.DeltaRow(T0 + 2, "d", "no", D("0.3"), D(2), True, 1),
    ]
    venue = "tsdb-rule-compressed"
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        _store(conn, venue, snaps, deltas)
        chunks = conn.execute(
            "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'orderbook_deltas' AND range_start <= to_timestamp(%s / 1000.0)"
            " AND range_end > to_timestamp(%s / 1000.0)",
            (T0 + SHIFT + 1, T0 + SHIFT + 1),
        ).fetchall()
        assert chunks
        for (chunk,) in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
        _check(conn, venue, snaps, deltas, [T0 + 1, T0 + 2])
        got = book_at(conn, MARKET, T0 + SHIFT + 2, venue)
        assert got is not None and got.book.normalised() == ((((D("0.4"), D(5)),)), ((D("0.3"), D(2)),))
