"""The venue column (migration 0008): a database at 0007 with rows moves forward without losing a row and with every
row's venue filled; the replay-absorbing key includes the venue; books, top of book and bars keep venues apart when
a market name exists at two venues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest

from bench.sink.data import make_events
from mdpipe.config import PostgresConfig
from schemas import Event, encode_event
from sink import book as pybook
from sink import migrate as migrate_module
from sink.book_db import book_at, books_at
from tests.sink.conftest import FIELDS, expected_tables, read_tables, write_as_before_venue

pytestmark = pytest.mark.integration
PLAIN = PostgresConfig(timescaledb="off")
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BAR = "market, bucket, open, high, low, close, volume, trades"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _write(dsn: str, events: list[Event], first_offset: int = 0) -> Any:
    from sink.batch import Batch, Source
    from sink.store import Store

    store = Store(dsn, "g-venue")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, first_offset + i, encode_event(e)) for i, e in enumerate(events)])
        result = store.write(batch, lambda dead: None)
        assert not result.dead
        return result
    finally:
        store.close()


def _at_0007(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate_module.discover
    with monkeypatch.context() as patch:
        patch.setattr(migrate_module, "discover", lambda *a: [m for m in real(*a) if m.version <= 7])
        assert migrate_module.migrate(dsn, PLAIN).applied == [1, 2, 3, 4, 5, 6, 7]


def _history() -> list[Event]:
    """Every event type over three days (three daily partitions) of one venue."""
    events = make_events(3000, markets=20, seed=15, start_ms=_ms(datetime(2026, 3, 1, 22, tzinfo=UTC)))
    return [msgspec.structs.replace(e, ts_ms=e.ts_ms + (i % 3) * DAY_MS) for i, e in enumerate(events)]


def _has_venue(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'trades' AND column_name = 'venue'"
            ).fetchone()[0]  # type: ignore[index]
        )


@pytest.mark.parametrize("source", ["config", "markets"])
def test_a_database_at_0007_moves_forward_keeping_every_row_with_its_venue(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    dsn = make_database()
    _at_0007(dsn, monkeypatch)
    events = _history()
    venue = events[0].venue
    write_as_before_venue(dsn, make_database(), events)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("REFRESH MATERIALIZED VIEW bars_1m")  # a user had filled the bars
        bars_before = conn.execute(
            "SELECT market, bucket, open, high, low, close, volume, trades FROM bars_1m"
        ).fetchall()
        if source == "markets":  # the venue the sink recorded with the market reference data
            conn.execute("INSERT INTO markets (ticker, venue, updated_at) VALUES ('M', %s, now())", (venue,))
    before = read_tables(dsn, venue=False)
    assert sum(len(rows) for rows in before.values()) == len(events)

    configured = venue if source == "config" else None
    assert migrate_module.migrate(dsn, PLAIN, configured).applied == [8, 10, 11, 12, 13]
    assert read_tables(dsn, venue=False) == before  # every row, every column, exactly
    assert read_tables(dsn) == expected_tables(events)  # and each row's venue is the events' venue
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in FIELDS:  # no default left: a writer that does not name the venue is refused
            default = conn.execute(
                "SELECT column_default FROM information_schema.columns WHERE table_name = %s AND column_name = 'venue'",
                (table,),
            ).fetchone()
            assert default == (None,), table
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                "INSERT INTO trades (ts, market, event_key, gatherer, received_at, trade_id, yes_price, no_price,"
                " count) VALUES (now(), 'M', 'x', 'g', now(), 't', 0.5, 0.5, 1)"
            )
        # the bars were filled before: they still are, per venue, and the concurrent refresh still works
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY bars_1m")
        bars = conn.execute(
            "SELECT venue, market, bucket, open, high, low, close, volume, trades FROM bars_1m"
        ).fetchall()
    assert sorted(b[1:] for b in bars) == sorted(bars_before) and {b[0] for b in bars} == {venue}
    replay = _write(dsn, events, first_offset=10_000)  # the replay of what the old sink loaded is absorbed
    assert replay.duplicates == len(events)
    assert read_tables(dsn) == expected_tables(events)
    assert migrate_module.migrate(dsn, PLAIN, venue).applied == []


def test_rows_whose_venue_is_unknown_stop_the_migration_and_change_nothing(
    make_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = make_database()
    _at_0007(dsn, monkeypatch)
    events = _history()[:300]
    write_as_before_venue(dsn, make_database(), events)
    with pytest.raises(psycopg.errors.RaiseException, match="venue is unknown"):
        migrate_module.migrate(dsn, PLAIN)  # no configured venue, no markets row naming one
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO markets (ticker, venue, updated_at) VALUES ('M', 'venue-b', now())")
    with pytest.raises(psycopg.errors.RaiseException, match="markets table holds"):
        migrate_module.migrate(dsn, PLAIN, events[0].venue)  # the configuration and the data disagree
    assert not _has_venue(dsn)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (7,)


def test_the_same_event_key_at_two_venues_is_two_events(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    mine = make_events(2000, markets=10, seed=16)
    theirs = [msgspec.structs.replace(e, venue="venue-b") for e in mine]  # same keys, same times, same markets
    assert _write(dsn, mine).duplicates == 0
    assert _write(dsn, theirs, first_offset=5000).duplicates == 0
    assert _write(dsn, mine + theirs, first_offset=10_000).duplicates == len(mine) + len(theirs)  # replays
    with psycopg.connect(dsn) as conn:
        for table in FIELDS:
            counts = dict(conn.execute(f"SELECT venue, count(*) FROM {table} GROUP BY venue").fetchall())  # type: ignore[arg-type]
            assert counts.get("venue-b") == counts.get(mine[0].venue), (table, counts)


_SNAP = """INSERT INTO orderbook_snapshots (ts, venue, market, event_key, gatherer, received_at, yes_prices,
    yes_counts, no_prices, no_counts, after_keys)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s, %s, '{}')"""
_DELTA = """INSERT INTO orderbook_deltas (ts, venue, market, event_key, gatherer, received_at, side, price, delta)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s)"""
_TRADE = """INSERT INTO trades (ts, venue, market, event_key, gatherer, received_at, trade_id, yes_price, no_price,
    count) VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, 1 - %s, %s)"""


def test_books_top_of_book_and_bars_keep_two_venues_apart(make_database: Callable[[], str]) -> None:
    """Market "M" exists at venues A and B with different books. A's snapshot is older, B's newer, and A has deltas
    after B's snapshot: a book never mixes the two."""
    dsn = make_database()
    migrate_module.migrate(dsn, PLAIN)
    d = Decimal
    rows: dict[str, tuple[list[pybook.SnapshotRow], list[pybook.DeltaRow]]] = {
        "A": (
            [pybook.SnapshotRow(T0, "s1", [(d("0.40"), d(10))], [(d("0.55"), d(7))])],
            [
                pybook.DeltaRow(T0 + 5, "d1", "yes", d("0.42"), d(3)),
                pybook.DeltaRow(T0 + 9, "d2", "no", d("0.50"), d(2)),
            ],
        ),
        "B": (
            [pybook.SnapshotRow(T0 + 3, "s1", [(d("0.20"), d(1))], [(d("0.70"), d(4))])],
            [pybook.DeltaRow(T0 + 7, "d1", "yes", d("0.25"), d(6))],
        ),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        for venue, (snaps, deltas) in rows.items():
            for s in snaps:
                conn.execute(_SNAP, (s.ts_ms, venue, "M", s.event_key, [p for p, _ in s.yes], [c for _, c in s.yes],
                                     [p for p, _ in s.no], [c for _, c in s.no]))  # fmt: skip
            for x in deltas:
                conn.execute(_DELTA, (x.ts_ms, venue, "M", x.event_key, x.side, x.price, x.delta))
        for venue, price, count in (("A", d("0.40"), d(2)), ("A", d("0.45"), d(1)), ("B", d("0.90"), d(5))):
            conn.execute(_TRADE, (T0 + 1, venue, "M", f"t-{price}", f"t-{price}", price, price, count))

        for at in range(T0 - 1, T0 + 12):
            for venue, (snaps, deltas) in rows.items():
                want = pybook.book_at(snaps, deltas, at)
                got = book_at(conn, "M", at, venue)
                assert (got is None) == (want is None), (venue, at)
                if got is not None and want is not None:
                    assert got.venue == venue and got.book.normalised() == want.normalised(), (venue, at)
            # no venue named: the venue of the latest snapshot at or before `at`, and only its deltas
            latest = "B" if at >= T0 + 3 else "A"
            anyone = book_at(conn, "M", at)
            want = pybook.book_at(*rows[latest], at)
            assert (anyone is None) == (want is None), at
            if anyone is not None and want is not None:
                assert anyone.venue == latest and anyone.book.normalised() == want.normalised(), at
        many = books_at(conn, [("M", T0 + 11)], venue="A")
        assert many[0] is not None and many[0].normalised() == pybook.book_at(*rows["A"], T0 + 11).normalised()  # type: ignore[union-attr]

        top = conn.execute(
            "SELECT venue, (extract(epoch FROM ts) * 1000)::bigint, yes_bid, yes_ask FROM top_of_book "
            "WHERE market = 'M' ORDER BY venue, ts"
        ).fetchall()
        assert top == [
            ("A", T0, d("0.4"), d("0.45")),
            ("A", T0 + 5, d("0.42"), d("0.45")),
            ("A", T0 + 9, d("0.42"), d("0.45")),
            ("B", T0 + 3, d("0.2"), d("0.3")),
            ("B", T0 + 7, d("0.25"), d("0.3")),
        ]
        conn.execute("REFRESH MATERIALIZED VIEW bars_1m")
        bars = conn.execute("SELECT venue, market, open, high, low, close, volume, trades FROM bars_1m ORDER BY venue")
        assert bars.fetchall() == [
            ("A", "M", d("0.40"), d("0.45"), d("0.40"), d("0.45"), d(3), 2),
            ("B", "M", d("0.90"), d("0.90"), d("0.90"), d("0.90"), d(5), 1),
        ]
