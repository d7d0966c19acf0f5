"""Alias delta records raise the stored row's ordinal to the greatest (sink.ordinals), never add a row, and change
nothing more when read again: through the sink's write path (Store + Batch) and through the broker (Loader)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest

from mdpipe.config import PostgresConfig
from schemas import BookDelta, BookSnapshot, Event, encode_event
from sink import ordinals
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store, WriteResult

pytestmark = pytest.mark.integration

MS0 = 1_767_225_600_200
VENUE = "replacing-venue"  # any venue name: the sink keeps the rule in the rows (BookDelta.replaces)


def delta(
    key: str, ordinal: int, alias: bool = False, size: str = "7", market: str = "1", ts_ms: int = MS0
) -> BookDelta:
    return BookDelta(
        venue=VENUE, market=market, event_key=key, ts_ms=ts_ms, recv_ns=ts_ms * 1_000_000 + ordinal, gatherer="g2",
        market_id="0xm", side="yes", price=Decimal("0.48"), delta=Decimal(size), replaces=True, ordinal=ordinal,
        alias=alias,
    )  # fmt: skip


def rows(dsn: str, market: str = "1") -> list[tuple[str, int, Decimal]]:
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            "SELECT event_key, ordinal, delta FROM orderbook_deltas WHERE market = %s ORDER BY event_key", (market,)
        ).fetchall()
    return [(k, o, d) for k, o, d in got]


class Sink:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.offset = 0

    def write(self, *events: BookDelta, fast: bool = True) -> WriteResult:
        store = Store(self.dsn, "g-delta-aliases")
        try:
            batch = Batch() if fast else Batch(fast=None)
            batch.add_many([Source("events", 0, self.offset + i, encode_event(e)) for i, e in enumerate(events)])
            self.offset += len(events)
            return store.write(batch, lambda dead: None)
        finally:
            store.close()


@pytest.fixture
def sink(make_database: Callable[..., str]) -> Sink:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    return Sink(dsn)


@pytest.mark.parametrize("fast", [True, False], ids=["c", "python"])
def test_an_alias_raises_its_row_to_the_greatest_ordinal_and_is_never_a_row(sink: Sink, fast: bool) -> None:
    # the row (the copy read first counted 1) and, in the same batch after it, a copy that counted 3
    result = sink.write(delta("p:a:1", 1), delta("p:b:1", 2, size="3"), delta("p:a:1", 3, alias=True), fast=fast)
    assert rows(sink.dsn) == [("p:a:1", 3, Decimal(7)), ("p:b:1", 2, Decimal(3))]
    assert result.rows == {"orderbook_deltas": 2} and (result.delta_aliases, result.ordinals_raised) == (1, 1)
    # later batches: a lower one, the same one again (a replay), one for a row that is not there
    result = sink.write(
        delta("p:a:1", 2, alias=True), delta("p:a:1", 3, alias=True), delta("p:zz:1", 5, alias=True), fast=fast
    )
    assert result.rows == {} and result.duplicates == 0 and not result.dead
    assert (result.delta_aliases, result.ordinals_raised) == (3, 0)
    assert rows(sink.dsn) == [("p:a:1", 3, Decimal(7)), ("p:b:1", 2, Decimal(3))]
    # the whole first batch read again (a re-delivery): the slow path absorbs the rows, the alias changes nothing
    result = sink.write(delta("p:a:1", 1), delta("p:b:1", 2, size="3"), delta("p:a:1", 3, alias=True), fast=fast)
    assert result.rows.get("orderbook_deltas", 0) == 0 and result.duplicates == 2
    assert rows(sink.dsn) == [("p:a:1", 3, Decimal(7)), ("p:b:1", 2, Decimal(3))]


def test_the_raise_probes_the_unique_key_with_every_column(sink: Sink) -> None:
    # the UPDATE finds each record's row through the table's unique key (market, ts, event_key, venue): a join that
    # leaves the market out could only scan the whole index (or table) of every partition for each batch
    sink.write(delta("p:a:1", 1))
    with psycopg.connect(sink.dsn) as conn:
        conn.execute(
            f"CREATE TEMP TABLE {ordinals._STAGE} (LIKE {ordinals.TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        conn.execute(f"INSERT INTO {ordinals._STAGE} SELECT * FROM {ordinals.TABLE}")
        conn.execute(f"ANALYZE {ordinals._STAGE}")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + ordinals._RAISE))
    probes = [line for line in plan.splitlines() if "Index Cond" in line]
    columns = ("market = s.market", "ts = s.ts", "event_key = s.event_key", "venue = s.venue")
    assert probes and all(c in p for p in probes for c in columns), plan


def test_the_loader_applies_aliases_once_whatever_is_read_again(make_sink_env: Callable[..., object]) -> None:
    """Through the broker: a row, its aliases (one raising, one lower) and the other rows of its millisecond; the
    book at that millisecond is the last change's. A second consumer group reads it all again: nothing changes."""
    env = make_sink_env(timescaledb="off")
    m = f"ord-{uuid.uuid4().hex[:8]}"  # the database may be shared: this test's rows only
    start = BookSnapshot(venue=VENUE, market=m, event_key=f"b:{m}", ts_ms=MS0 - 1, recv_ns=0, gatherer="g1")
    events: list[Event] = [start, delta(f"p:last:{m}", 1, market=m), delta(f"p:first:{m}", 1, size="5", market=m)]
    events += [delta(f"p:mid:{m}", 2, size="3", market=m)]
    events += [delta(f"p:last:{m}", 3, alias=True, market=m), delta(f"p:last:{m}", 2, alias=True, market=m)]
    env.produce(events)  # type: ignore[attr-defined]
    stats = env.run_loader(f"g-{m}-1")  # type: ignore[attr-defined]
    assert stats.rows == 4 and stats.dead == 0
    want = [(f"p:first:{m}", 1, Decimal(5)), (f"p:last:{m}", 3, Decimal(7)), (f"p:mid:{m}", 2, Decimal(3))]
    dsn = env.dsn  # type: ignore[attr-defined]
    assert rows(dsn, m) == want
    with psycopg.connect(dsn) as conn:
        at = conn.execute("SELECT to_timestamp(%s / 1000.0)", (MS0,)).fetchone()[0]  # type: ignore[index]
        book = conn.execute("SELECT side, price, size FROM book_at(%s, %s, %s)", (m, at, VENUE)).fetchall()
    assert book == [("yes", Decimal("0.48"), Decimal(7))]  # the last change's size, not the middle one's
    env.run_loader(f"g-{m}-2")  # type: ignore[attr-defined]  # a replay: every record again
    assert rows(dsn, m) == want
