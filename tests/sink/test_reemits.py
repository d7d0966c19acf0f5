"""Runs of batches holding events already stored (a dedup worker re-emits what it decided since its last commit when it
restarts; a replay) through the sink's real write path (Store + Batch): the table whose COPY failed is staged without
a second COPY, and the batches after it are staged at once until one holds no stored row (sink.store)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from bench.sink.data import BASE_MS, make_events
from mdpipe.config import PostgresConfig
from schemas import BookDelta, encode_event
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store, WriteResult
from venues import default_name

pytestmark = pytest.mark.integration

TABLE = "orderbook_deltas"
STAGE = f"stage_{TABLE}"
DELTAS = [e for e in make_events(2_000, markets=20, seed=41) if isinstance(e, BookDelta)][:600]


@pytest.fixture
def store(make_database: Callable[..., str]) -> Any:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    s = Store(dsn, "g-reemits")
    yield s
    s.close()


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The target of every COPY of orderbook_deltas rows the store runs, in order."""
    seen: list[str] = []
    copy = Store._copy

    def spy(conn: psycopg.Connection[Any], table: str, target: str, rows: list[bytes]) -> None:
        if table == TABLE:
            seen.append(target)
        copy(conn, table, target, rows)

    monkeypatch.setattr(Store, "_copy", staticmethod(spy))
    return seen


def write(store: Store, events: list[Any], first_offset: int) -> WriteResult:
    batch = Batch()
    batch.add_many([Source("events", 0, first_offset + i, encode_event(e)) for i, e in enumerate(events)])
    return store.write(batch, lambda dead: None)


def stored(store: Store) -> int:
    return int(store.conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])  # type: ignore[index]


def test_the_table_whose_copy_failed_is_staged_without_copying_it_again(store: Store, copies: list[str]) -> None:
    assert len(DELTAS) == 600
    write(store, DELTAS[:200], 0)
    assert copies == [TABLE]
    copies.clear()
    result = write(store, DELTAS[100:300], 200)  # 100 re-emitted, 100 new
    assert result.rows == {TABLE: 100} and result.duplicates == 100 and result.slow_path
    assert copies == [TABLE, STAGE]  # the COPY that failed, then staging: no second COPY of the same rows
    assert stored(store) == 300


def test_a_run_of_batches_with_stored_rows_is_staged_at_once_until_one_holds_none(
    store: Store, copies: list[str]
) -> None:
    write(store, DELTAS[:200], 0)
    write(store, DELTAS[100:300], 200)  # the first batch of the run: its COPY fails
    copies.clear()
    result = write(store, DELTAS[250:400], 400)  # 50 re-emitted: staged at once, no COPY that fails first
    assert result.rows == {TABLE: 100} and result.duplicates == 50
    assert copies == [STAGE]
    copies.clear()
    result = write(store, DELTAS[400:500], 600)  # none stored: staged once more, and the table leaves staging
    assert result.rows == {TABLE: 100} and result.duplicates == 0
    assert copies == [STAGE]
    copies.clear()
    result = write(store, DELTAS[500:600], 700)  # the fast path again
    assert result.rows == {TABLE: 100} and result.duplicates == 0 and not result.slow_path
    assert copies == [TABLE]
    assert stored(store) == 600


def test_staging_decodes_the_batch_again_only_for_a_rejected_row(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A staged batch without a rejected row never asks for its messages (decoding every message of the batch again
    for each staged table cost more than the staging itself)."""
    calls: list[str] = []
    sources_of = Batch.sources_of

    def spy(self: Batch, table: str) -> list[Any]:
        calls.append(table)
        return sources_of(self, table)

    monkeypatch.setattr(Batch, "sources_of", spy)
    write(store, DELTAS[:100], 0)
    result = write(store, DELTAS[50:150], 100)  # the COPY fails, then staging
    assert result.duplicates == 50 and result.slow_path
    result = write(store, DELTAS[140:200], 200)  # staged at once
    assert result.duplicates == 10
    assert calls == []


def test_a_rejected_row_in_a_staged_batch_is_a_dead_letter_of_its_own_message(store: Store) -> None:
    """Staging asks for the batch's messages only when a row is rejected: the dead letter still carries its own."""
    write(store, DELTAS[:100], 0)
    write(store, DELTAS[50:150], 100)  # the table is staged from here
    bad = BookDelta(venue=default_name(), gatherer="g2", market="KX-B", event_key="d:bad\x00", ts_ms=BASE_MS, recv_ns=1,
                    side="yes", price=Decimal("0.5"), delta=Decimal("1"))  # fmt: skip
    result = write(store, [*DELTAS[140:170], bad, *DELTAS[170:200]], 200)
    assert result.rows == {TABLE: 50} and result.duplicates == 10
    assert [d.payload for d in result.dead] == [encode_event(bad)]
    assert "rejected by the database" in result.dead[0].reason
    assert stored(store) == 200
