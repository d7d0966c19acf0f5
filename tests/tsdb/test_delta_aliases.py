"""Alias delta records (sink.ordinals) in TimescaleDB mode: the row's ordinal is raised on a hypertable, also in a
chunk compressed since, and no row is added (a day of its own of the shared database: 2026-03-20)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from schemas import encode_event
from sink.batch import Batch, Source
from sink.store import Store
from tests.sink.test_delta_aliases import delta

pytestmark = pytest.mark.integration
MS = int(datetime(2026, 3, 20, 12, tzinfo=UTC).timestamp() * 1000)
MARKET = "tsdb-ordinals"


def _write(dsn: str, offset: int, *events: object) -> None:
    store = Store(dsn, "g-tsdb-ordinals")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, offset + i, encode_event(e)) for i, e in enumerate(events)])  # type: ignore[arg-type]
        store.write(batch, lambda dead: None)
    finally:
        store.close()


def _rows(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT event_key, ordinal FROM orderbook_deltas WHERE market = %s ORDER BY event_key", (MARKET,)
        ).fetchall()


def test_an_alias_raises_a_row_in_a_compressed_chunk(tsdb_dsn: str) -> None:
    rows = [delta("p:t1", 1, market=MARKET, ts_ms=MS), delta("p:t2", 1, market=MARKET, ts_ms=MS)]
    _write(tsdb_dsn, 0, *rows, delta("p:t1", 2, alias=True, market=MARKET, ts_ms=MS))
    assert _rows(tsdb_dsn) == [("p:t1", 2), ("p:t2", 1)]
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        chunks = conn.execute(
            "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'orderbook_deltas' AND range_start <= to_timestamp(%s / 1000.0)"
            " AND range_end > to_timestamp(%s / 1000.0)",
            (MS, MS),
        ).fetchall()
        assert chunks
        for (chunk,) in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
    _write(tsdb_dsn, 3, delta("p:t2", 3, alias=True, market=MARKET, ts_ms=MS))
    _write(
        tsdb_dsn, 4, delta("p:t2", 3, alias=True, market=MARKET, ts_ms=MS), delta("p:t1", 1, market=MARKET, ts_ms=MS)
    )
    assert _rows(tsdb_dsn) == [("p:t1", 2), ("p:t2", 3)]
