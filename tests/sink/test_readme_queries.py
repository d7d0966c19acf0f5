"""Every example query of the README's data dictionary ("The data") runs, as written, against a database the sink's
store loaded, and returns rows; the book example equals sink.book's rebuild of the same rows; the dictionary names
every column of every table the migrations create."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.sink.data import BASE_MS, make_events
from mdpipe.config import PostgresConfig
from schemas import BookDelta, BookSnapshot, encode_event
from sink import book as pybook
from sink.migrate import migrate

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def _data_section() -> str:
    text = README.read_text()
    start = text.index("\n## The data\n")
    return text[start : text.index("\n## ", start + 1)]


def _examples() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", _data_section(), flags=re.S)


@pytest.fixture(scope="module")
def loaded(make_database: Callable[[], str]) -> tuple[str, list[Any]]:
    from sink.batch import Batch, Source
    from sink.store import Store

    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    events = make_events(20_000, markets=3, seed=21, start_ms=BASE_MS)
    store = Store(dsn, "doc")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events)])
        assert not store.write(batch, lambda dead: None).dead
    finally:
        store.close()
    return dsn, events


def test_the_doc_has_its_examples() -> None:
    assert len(_examples()) >= 7


@pytest.mark.parametrize("index", range(len(_examples())))
def test_example_query_runs_and_returns_rows(loaded: tuple[str, list[Any]], index: int) -> None:
    dsn, _ = loaded
    statements = [s.strip() for s in _examples()[index].split(";\n") if s.strip()]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            cur = conn.execute(statement.rstrip(";"))  # type: ignore[arg-type]
        rows = cur.fetchall()
    assert rows, statements[-1]


def test_the_book_example_is_the_pure_rebuild(loaded: tuple[str, list[Any]]) -> None:
    dsn, events = loaded
    query = next(q for q in _examples() if "FROM book_at(" in q)
    market, at, venue = re.search(r"book_at\('([^']+)', '([^']+)', '([^']+)'\)", query).groups()  # type: ignore[union-attr]
    assert {e.venue for e in events} == {venue}
    at_ms = int(datetime.fromisoformat(at).astimezone(UTC).timestamp() * 1000)
    snaps = [
        pybook.SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys))
        for e in events
        if isinstance(e, BookSnapshot) and e.market == market
    ]
    deltas = [
        pybook.DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta)
        for e in events
        if isinstance(e, BookDelta) and e.market == market
    ]
    want = pybook.book_at(snaps, deltas, at_ms)
    assert want is not None
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query.rstrip().rstrip(";")).fetchall()  # type: ignore[arg-type]
    got = pybook.Book()
    for side, price, size in rows:
        (got.yes if side == "yes" else got.no)[price] = size
    assert got.normalised() == want.normalised() and len(rows) == len(want.yes) + len(want.no)


def test_bars_are_the_trades_ohlcv(loaded: tuple[str, list[Any]]) -> None:
    from schemas import Trade

    dsn, events = loaded
    want: dict[tuple[str, int], list[Any]] = {}
    for e in sorted((e for e in events if isinstance(e, Trade)), key=lambda e: (e.ts_ms, e.event_key)):
        bar = want.setdefault(
            (e.venue, e.market, e.ts_ms // 60_000 * 60_000), [e.yes_price, e.yes_price, e.yes_price, 0, 0, 0]
        )
        bar[1], bar[2], bar[3] = max(bar[1], e.yes_price), min(bar[2], e.yes_price), e.yes_price
        bar[4] += e.count
        bar[5] += 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("REFRESH MATERIALIZED VIEW bars_1m")
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY bars_1m")
        rows = conn.execute(
            "SELECT venue, market, (extract(epoch FROM bucket) * 1000)::bigint, open, high, low, close, volume, "
            "trades FROM bars_1m"
        ).fetchall()
    assert {(vn, m, b): [o, h, lo, c, v, n] for vn, m, b, o, h, lo, c, v, n in rows} == want


def test_the_dictionary_names_every_column_of_every_table(loaded: tuple[str, list[Any]]) -> None:
    """Every column of every table, view and function result the migrations create appears in the dictionary."""
    dsn, _ = loaded
    section = _data_section()
    with psycopg.connect(dsn) as conn:
        relations = conn.execute(
            """SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
                 AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped"""
        ).fetchall()
        results = conn.execute(  # the functions' result columns
            """SELECT p.proname, a.name FROM pg_proc p, unnest(p.proargnames, p.proargmodes) AS a(name, mode)
               WHERE p.pronamespace = 'public'::regnamespace AND a.mode = 't'"""
        ).fetchall()
    names = {r for r, _ in relations} | {p for p, _ in results}
    assert {"trades", "top_of_book", "bars_1m", "book_at", "schema_migrations"} <= names
    missing = sorted(f"{r}.{c}" for r, c in (*relations, *results) if f"`{r}" not in section or f"`{c}`" not in section)
    assert not missing, missing
