"""Books in the database (migrations 0006, 0008, 0010): the SQL book_at agrees with sink.book on random histories of
additive and replacing deltas (property test against the real database), sink.book_db's batch reader, top_of_book,
and `mdpipe book`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdpipe.cli import main
from mdpipe.config import PostgresConfig, VenueConfig
from sink import book as pybook
from sink.book_db import book_at, books_at
from sink.migrate import migrate

pytestmark = pytest.mark.integration
MARKET = "KX-BOOK"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

VENUE = VenueConfig().name  # the configured venue: `mdpipe book` reads it without --venue
_SNAP = """INSERT INTO orderbook_snapshots (ts, venue, market, event_key, gatherer, received_at, yes_prices, yes_counts,
    no_prices, no_counts, after_keys)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s, %s, %s)"""
_DELTA = """INSERT INTO orderbook_deltas (ts, venue, market, event_key, gatherer, received_at, side, price, delta,
    replaces, ordinal)
VALUES (timestamptz 'epoch' + %s * interval '1 ms', %s, %s, %s, 'g1', now(), %s, %s, %s, %s, %s)"""


@pytest.fixture(scope="module")
def book_db(make_database: Callable[[], str]) -> Iterator[str]:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    with psycopg.connect(dsn, autocommit=True) as conn:  # as in a database whose default collation is not C
        if conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'").fetchone():
            conn.execute('ALTER TABLE orderbook_snapshots ALTER COLUMN event_key TYPE text COLLATE "en-x-icu"')
    yield dsn


def _store(conn: psycopg.Connection[Any], snaps: list[pybook.SnapshotRow], deltas: list[pybook.DeltaRow]) -> None:
    conn.execute("TRUNCATE orderbook_snapshots, orderbook_deltas")
    with conn.cursor() as cur:
        for s in snaps:
            cur.execute(
                _SNAP,
                (s.ts_ms, VENUE, MARKET, s.event_key, [p for p, _ in s.yes], [c for _, c in s.yes],
                 [p for p, _ in s.no], [c for _, c in s.no], sorted(s.after_keys)),
            )  # fmt: skip
        for d in deltas:
            cur.execute(_DELTA, (d.ts_ms, VENUE, MARKET, d.event_key, d.side, d.price, d.delta, d.replaces, d.ordinal))


def _levels(book: pybook.Book) -> Any:
    """Both ladders exactly as returned (a zero level stays visible), sorted."""
    return tuple(tuple(sorted(ladder.items())) for ladder in (book.yes, book.no))


# Small worlds so that collisions happen: few times, few prices, snapshots and deltas sharing milliseconds.
prices = st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal("0.10"), Decimal("0.5"), Decimal("0.5500"),
                          Decimal("0.99")])  # fmt: skip
sizes = st.integers(-300, 300).map(lambda n: Decimal(n) / 4)
levels = st.lists(st.tuples(prices, sizes.filter(bool)), max_size=4)


@st.composite
def histories(
    draw: Any, rules: Any = st.just(False)
) -> tuple[list[pybook.SnapshotRow], list[pybook.DeltaRow], list[int]]:
    """Snapshots, deltas (each replacing or not as ``rules`` draws; ordinals colliding) and times to ask for.
    Event keys are unique but sort apart from the order of creation, as real keys (digests) do."""
    n_deltas = draw(st.integers(0, 25))
    deltas = [
        pybook.DeltaRow(T0 + draw(st.integers(0, 8)), f"d{(i * 7) % 26:02d}{i:02d}",
                        draw(st.sampled_from(["yes", "no"])), draw(prices), draw(sizes), draw(rules),
                        draw(st.integers(0, 3)))
        for i in range(n_deltas)
    ]  # fmt: skip
    snaps = []
    for j in range(draw(st.integers(0, 4))):
        ts = T0 + draw(st.integers(0, 8))
        same = [d.event_key for d in deltas if d.ts_ms == ts]
        after = draw(st.sets(st.sampled_from(same))) if same else set()
        # keys sorting differently in C and in a natural-language collation ("S-b" vs "s_a"): ties are broken in C
        key = draw(st.sampled_from(["s_a", "S-b", "s-c", "Sd"])) + f"{j}"
        snaps.append(pybook.SnapshotRow(ts, key, draw(levels), draw(levels), frozenset(after)))
    times = draw(st.lists(st.integers(-1, 10).map(lambda k: T0 + k), min_size=1, max_size=6))
    return snaps, deltas, times


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.one_of(histories(), histories(st.just(True)), histories(st.booleans())))
def test_sql_book_at_equals_the_pure_rule(book_db: str, history: Any) -> None:
    """Additive deltas only (a venue that adds), replacing ones only (a venue that replaces), and both mixed."""
    snaps, deltas, times = history
    with psycopg.connect(book_db, autocommit=True) as conn:
        _store(conn, snaps, deltas)
        batch = books_at(conn, [(MARKET, t) for t in times])
        for t, from_batch in zip(times, batch, strict=True):
            want = pybook.book_at(snaps, deltas, t)
            one = book_at(conn, MARKET, t)
            if want is None:
                assert one is None and from_batch is None, t
                continue
            assert one is not None and from_batch is not None, t
            assert _levels(one.book) == want.normalised(), t  # no zero level either
            assert _levels(from_batch) == want.normalised(), t
            base = pybook.latest_snapshot(snaps, t)
            assert base is not None and one.snapshot_key == base.event_key


def test_snapshots_at_the_same_time_are_chosen_as_sink_book_does(book_db: str) -> None:
    """Ties on ts go to the greatest event key in code-point order (Python's), whatever the column's collation."""
    snaps = [
        pybook.SnapshotRow(T0, "s_a", [(Decimal("0.40"), Decimal(1))], []),
        pybook.SnapshotRow(T0, "S-b", [(Decimal("0.30"), Decimal(2))], []),
    ]
    want = pybook.book_at(snaps, [], T0)
    assert want is not None and pybook.latest_snapshot(snaps, T0).event_key == "s_a"  # type: ignore[union-attr]
    with psycopg.connect(book_db, autocommit=True) as conn:
        _store(conn, snaps, [])
        got = book_at(conn, MARKET, T0)
    assert got is not None and got.snapshot_key == "s_a" and _levels(got.book) == want.normalised()


def test_top_of_book_follows_the_book(book_db: str) -> None:
    snaps = [pybook.SnapshotRow(T0, "s1", [(Decimal("0.40"), Decimal(10))], [(Decimal("0.55"), Decimal(7))])]
    deltas = [
        pybook.DeltaRow(T0 + 5, "d1", "yes", Decimal("0.42"), Decimal(3)),
        pybook.DeltaRow(T0 + 9, "d2", "no", Decimal("0.55"), Decimal(-7)),
    ]
    with psycopg.connect(book_db, autocommit=True) as conn:
        _store(conn, snaps, deltas)
        rows = conn.execute(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, yes_bid, yes_bid_size, yes_ask, yes_ask_size, no_bid "
            "FROM top_of_book WHERE market = %s AND ts >= timestamptz 'epoch' + %s * interval '1 ms' ORDER BY ts",
            (MARKET, T0),
        ).fetchall()
    assert rows == [
        (T0, Decimal("0.4"), Decimal(10), Decimal("0.45"), Decimal(7), Decimal("0.55")),
        (T0 + 5, Decimal("0.42"), Decimal(3), Decimal("0.45"), Decimal(7), Decimal("0.55")),
        (T0 + 9, Decimal("0.42"), Decimal(3), None, None, None),  # the no side emptied
    ]


def test_cli_book_prints_the_book_at_t(
    book_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    snaps = [pybook.SnapshotRow(T0 + 2, "s1", [(Decimal("0.40"), Decimal(10)), (Decimal("0.30"), Decimal(1))],
                                [(Decimal("0.55"), Decimal(7))], frozenset({"d2"}))]  # fmt: skip
    deltas = [
        pybook.DeltaRow(T0 + 1, "d0", "yes", Decimal("0.40"), Decimal(99)),  # before the snapshot: inside it
        pybook.DeltaRow(T0 + 2, "d1", "yes", Decimal("0.40"), Decimal(99)),  # same ms, not in after_keys: inside
        pybook.DeltaRow(T0 + 2, "d2", "yes", Decimal("0.40"), Decimal("-2.5")),  # same ms, in after_keys: applied
        pybook.DeltaRow(T0 + 7, "d3", "no", Decimal("0.60"), Decimal(4)),
        pybook.DeltaRow(T0 + 8, "d4", "yes", Decimal("0.30"), Decimal(-1)),  # level gone
        pybook.DeltaRow(T0 + 50, "d5", "yes", Decimal("0.99"), Decimal(1)),  # after T
    ]
    with psycopg.connect(book_db, autocommit=True) as conn:
        _store(conn, snaps, deltas)
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", book_db)
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    assert main(["book", "--market", MARKET, "--at", "2026-01-01T00:00:00.010Z", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["yes"] == [["0.4", "7.5"]] and got["no"] == [["0.6", "4"], ["0.55", "7"]]
    assert got["snapshot_at"] == "2026-01-01T00:00:00.002Z" and got["at_ms"] == T0 + 10
    assert main(["book", "--market", MARKET, "--at", str(T0 + 10), "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "0.6" in text and "0.55" not in text and "7.5" in text
    assert main(["book", "--market", MARKET, "--at", str(T0 + 1)]) == 1  # before the first snapshot
    assert "no order-book snapshot" in capsys.readouterr().out
    assert main(["book", "--market", MARKET, "--at", str(T0 + 10), "--venue", "elsewhere", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["venue"] == "elsewhere"  # that venue has no such market


def test_cli_book_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["book", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--market" in out and "--at" in out and "--depth" in out and "--json" in out and "--venue" in out
