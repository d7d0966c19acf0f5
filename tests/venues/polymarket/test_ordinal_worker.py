"""A native dedup worker (`mdpipe dedup`) on the real broker emits a Polymarket delta's higher ordinal as an
alias record, once, and the sink's write path turns the events topic into rows whose book is the venue's. (The Faust
engine runs the same decision and emits ALIAS decisions alike; its idle exit waits on partitions this one-market
input leaves empty, so it is not run here.)"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from dedup_stream.synth import produce_frames
from mdpipe.config import PostgresConfig
from schemas import BookDelta, BookSnapshot, encode_event
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store
from tests.dedup_stream.conftest import WorkerLauncher, dedup_topics  # noqa: F401 (the fixture)
from tests.venues.polymarket.test_ordinal_dedup import ASSET, TS, frames

pytestmark = pytest.mark.integration


def test_a_later_copy_with_a_higher_ordinal_raises_the_stored_row(  # type: ignore[no-untyped-def]
    dedup_topics,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    make_database: Callable[..., str],
) -> None:
    topics = dedup_topics
    dedup_workers = WorkerLauncher(tmp_path, engine="native")
    conf = {"bootstrap.servers": topics.bootstrap}
    # g2 lost the level's first two changes in the millisecond: its copy of the last one (ordinal 1) is read first
    produce_frames(conf, topics.raw("g2"), frames("g2", {0, 1}))
    first = dedup_workers.start(topics, "it-ordinal", "w1", "--exit-when-idle", "--idle-s", "3")
    assert first.wait(120) == 0, first.log()[-3000:]
    produce_frames(conf, topics.raw("g1"), frames("g1", set()))
    second = dedup_workers.start(topics, "it-ordinal", "w1", "--exit-when-idle", "--idle-s", "3")
    assert second.wait(120) == 0, second.log()[-3000:]

    values = [value for _, _, _, value in sorted(topics.read(topics.events))]
    events = [e for e in topics.events_read() if isinstance(e, BookDelta)]
    assert len(values) == len(events) == 4
    assert sorted((e.alias, e.ordinal, str(e.delta)) for e in events) == [
        (False, 1, "5"), (False, 1, "7"), (False, 2, "3"), (True, 3, "7"),
    ]  # fmt: skip
    assert second.summary()["gatherers"]["g1"]["duplicates"] == 1  # type: ignore[index]

    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    store = Store(dsn, "g-ordinal")
    try:
        start = BookSnapshot(venue="polymarket", market=ASSET, event_key="b", ts_ms=TS - 1, recv_ns=0, gatherer="g1")
        batch = Batch()
        batch.add_many([Source("events", 0, i, v) for i, v in enumerate([encode_event(start), *values])])
        store.write(batch, lambda dead: None)
    finally:
        store.close()
    with psycopg.connect(dsn) as conn:
        ordinals = conn.execute("SELECT delta, ordinal FROM orderbook_deltas ORDER BY ordinal").fetchall()
        at = conn.execute("SELECT to_timestamp(%s / 1000.0)", (TS,)).fetchone()[0]  # type: ignore[index]
        book = conn.execute("SELECT side, price, size FROM book_at(%s, %s, 'polymarket')", (ASSET, at)).fetchall()
    assert ordinals == [(Decimal(5), 1), (Decimal(3), 2), (Decimal(7), 3)]
    assert book == [("yes", Decimal("0.48"), Decimal(7))]
    for worker in dedup_workers.workers:
        assert worker.proc.poll() is not None
