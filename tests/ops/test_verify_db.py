"""`mdpipe verify --json` on a real venue record and truth file (written by venue_sim's own writers) and a real
database loaded by the sink's own store (so verify reads exactly what the sink writes: jsonb, numeric, arrays).
The venue is the default one: its message bodies come from its synthetic data (``Venue.synth``), the events a correct
pipeline stores from its truth normaliser, the channels from verify's own map of kinds to channels."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from mdpipe.cli import main
from mdpipe.config import load_config
from ops.verify_record import CHANNEL_OF_KIND
from schemas import encode_event
from schemas.events import BookSnapshot, Event, Gap
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store
from venue_sim.record import (
    BadMessage,
    BookCheckpoint,
    ConnOpened,
    MarketLive,
    Record,
    RecordWriter,
    SnapshotSent,
    Subscribed,
    Suppressed,
    read_record,
    record_path,
)
from venue_sim.truth import TruthEvent, TruthWriter
from venues import default_name, get_venue

pytestmark = pytest.mark.integration

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
GATHERERS = ("g1", "g2", "g3")
CHANNELS = dict(enumerate((CHANNEL_OF_KIND[k] for k in ("delta", "trade", "ticker", "lifecycle")), 1))  # by sid
VENUE = default_name()
SYNTH = get_venue(VENUE).synth()
msg_to_event = get_venue(VENUE).truth_normaliser()
Body = Callable[[int], dict[str, Any]]  # venue ms -> a message body


class Venue:
    """Writes what the emulator writes (truth + record) and collects the events a correct pipeline would store."""

    def __init__(self) -> None:
        self.events: list[TruthEvent] = []
        self.records: list[Record] = []
        self.stored: list[Event] = []
        self.now_ns = T0

    def at(self, seconds: float) -> None:
        self.now_ns = T0 + int(seconds * NS)

    def emit(self, kind: str, market: str, body: Body, ts_ms: int | None = None) -> int:
        ts = ts_ms if ts_ms is not None else self.now_ns // 1_000_000
        msg = body(ts)
        ev = TruthEvent(len(self.events) + 1, kind, market, ts, self.now_ns, json.dumps(msg).encode())  # type: ignore[arg-type]
        self.events.append(ev)
        self.now_ns += 1_000_000
        return ev.id

    def store(self, *ids: int, gatherer: str = "g2") -> None:
        for i in ids:
            ev = self.events[i - 1]
            self.stored.append(
                msg_to_event(
                    ev.kind,
                    ev.msg,
                    market=ev.market,
                    event_key=f"k{i}",
                    recv_ns=ev.gen_ns + 1_000_000,
                    gatherer=gatherer,
                )
            )

    def write(self, truth: Path) -> None:
        with TruthWriter(truth, batch=3) as tw:
            for ev in self.events:
                tw.write(ev)
        with RecordWriter(record_path(truth), batch=5) as rw:
            for rec in self.records:
                rw.write(rec)


def delta(market: str, price: str, size: str, side: str = "yes") -> Body:
    return lambda ts_ms: SYNTH.delta_body(market, price, size, side, ts_ms=ts_ms)


def trade(market: str, trade_id: str) -> Body:
    return lambda ts_ms: SYNTH.trade_body(market, trade_id, ts_ms=ts_ms)


def ticker(market: str, volume: str) -> Body:
    return lambda ts_ms: SYNTH.ticker_body(market, volume, ts_ms=ts_ms)


def lifecycle(market: str, **fields: Any) -> Body:
    return lambda ts_ms: SYNTH.lifecycle_body(market, **fields)


def scenario(drop_market: bool, lose_trade: bool = True) -> Venue:
    """Markets A and B held by three gatherers; a bad ticker the pipeline must not store; with ``lose_trade`` a trade
    lost on every gatherer and reported by each; with ``drop_market``, a live market C no gatherer ever subscribes."""
    v = Venue()
    for market in ("A", "B", "C"):
        v.records.append(MarketLive(market, 0, T0, True))
    ms0 = T0 // 1_000_000 + 500
    v.at(0.5)
    v.emit("delta", "A", delta("A", "0.40", "10.00"), ts_ms=ms0)  # before any gatherer: only in the snapshot
    v.at(1)
    for conn, g in enumerate(GATHERERS, 1):
        v.records.append(ConnOpened(conn, f"mdpipe-gather/{g}", v.now_ns, len(v.events)))
        for sid, channel in CHANNELS.items():
            markets = ["*"] if channel == CHANNEL_OF_KIND["lifecycle"] else ["A", "B"]
            v.records.append(Subscribed(conn, sid, channel, markets, len(v.events), v.now_ns))
        v.records.append(SnapshotSent(conn, 1, "A", len(v.events), [("0.4000", "10.00")], []))
        v.records.append(SnapshotSent(conn, 1, "B", len(v.events), [], []))
    v.at(2)
    ms1 = v.now_ns // 1_000_000
    d2 = v.emit("delta", "A", delta("A", "0.43", "5.00"), ts_ms=ms1)
    d3 = v.emit("delta", "A", delta("A", "0.43", "5.00"), ts_ms=ms1)  # identical body, same millisecond
    d4 = v.emit("delta", "A", delta("A", "0.55", "7.00", side="no"), ts_ms=ms1)
    t5 = v.emit("trade", "A", trade("A", "t-5"))
    k6 = v.emit("ticker", "A", ticker("A", "100.00"))
    l7 = v.emit("lifecycle", "A", lifecycle("A", title="Will it?", fee=1.50, tags=["x"]))
    v.at(5)
    lost = v.emit("trade", "A", trade("A", "t-8"))
    if lose_trade:
        for conn in (1, 2, 3):
            v.records.append(Suppressed(conn, 2, [lost], "drop"))
    bad = v.emit("ticker", "B", ticker("B", "1E+1000000"))
    v.records.append(BadMessage(bad, "out-of-range number"))
    d10 = v.emit("delta", "B", delta("B", "0.20", "1.00"))
    if drop_market:
        v.emit("delta", "C", delta("C", "0.30", "2.00"))
        v.emit("trade", "C", trade("C", "t-c"))
    v.at(6)
    end_ms = v.now_ns // 1_000_000
    v.records.append(BookCheckpoint(end_ms, len(v.events), "A", [("0.40", "10"), ("0.43", "10")], [("0.55", "7")]))
    v.records.append(BookCheckpoint(end_ms, len(v.events), "B", [("0.20", "1")], []))
    v.records.append(BookCheckpoint(end_ms, len(v.events), "C", [("0.30", "2")] if drop_market else [], []))

    v.store(d2, d3, d4, t5, k6, l7, d10, *(() if lose_trade else (lost,)))
    snap = {"venue": VENUE, "gatherer": "g1", "recv_ns": T0 + NS}
    v.stored.append(BookSnapshot(**snap, market="A", event_key="sA", ts_ms=ms1, yes=[(Decimal("0.40"), Decimal(10))],
                                 after_keys=[f"k{d2}", f"k{d3}", f"k{d4}"]))  # fmt: skip
    v.stored.append(BookSnapshot(**snap, market="B", event_key="sB", ts_ms=ms0))
    for conn, g in enumerate(GATHERERS, 1):
        v.stored.append(
            Gap(
                venue=VENUE,
                gatherer=g,
                market="A",
                event_key=f"gap-{g}",
                ts_ms=(T0 + 4 * NS) // 1_000_000,
                recv_ns=T0 + 6 * NS,
                conn=conn,
                kind="seq",
                channel=CHANNELS[2],
                markets=["A", "B"],
                from_ns=T0 + 4 * NS,
                to_ns=T0 + 6 * NS,
                sid=2,
                missed=1,
            )
        )
    return v


@pytest.fixture
def database(make_database: Callable[..., str]) -> str:
    dsn = make_database()
    base = load_config(environ={}, use_infra_state=False)
    migrate(dsn, msgspec.structs.replace(base.postgres, dsn=dsn))
    return dsn


def load(dsn: str, events: list[Event]) -> None:
    store = Store(dsn, "verify-test")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events)])
        result = store.write(batch, lambda dead: None)
        assert not result.dead, result.dead
    finally:
        store.close()


def run_verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["verify", "--json", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def test_clean_run_with_a_reported_loss_and_bad_input(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venue = scenario(drop_market=False)
    venue.write(tmp_path / "truth.msgpack")
    load(database, venue.stored)
    code, report = run_verify(capsys, "--truth", str(tmp_path / "truth.msgpack"), "--dsn", database)
    assert code == 0 and report["clean"], report
    assert report["venue_events"] == 10 and report["bad_input"] == 1 and report["not_subscribed"] == 1
    assert report["expected"] == 7 and report["matched"] == 7 and report["rows"] == 7
    assert report["reported_losses"] == 1 and report["reported_by_kind"] == {"trade": 1}
    assert (report["missing"], report["duplicated"], report["unexpected"], report["markets_uncovered"]) == (0, 0, 0, 0)
    assert report["held_by"] == {"0": 2, "1": 0, "2": 0, "3": 8}  # 0: before subscribing, and the lost trade
    assert (report["snapshots"], report["snapshots_matched"], report["snapshots_sent"]) == (2, 2, 6)
    assert (report["books_checked"], report["books_mismatched"], report["books_unchecked"]) == (2, 0, 1)
    assert report["gatherers"] == ["g1", "g2", "g3"]


def test_a_market_no_gatherer_subscribed_fails_the_run(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venue = scenario(drop_market=True, lose_trade=False)
    venue.write(tmp_path / "truth.msgpack")
    load(database, venue.stored)
    code, report = run_verify(capsys, "--truth", str(tmp_path / "truth.msgpack"), "--dsn", database)
    assert code == 1 and not report["clean"]  # (the verify of #11 and before called this run clean)
    assert report["uncovered"] == 2 and report["markets_uncovered"] == 1 and report["markets_without_rows"] == 1
    assert report["missing"] == 0 and report["books_mismatched"] == 0  # C's checkpoint: never subscribed, unchecked
    assert report["markets_without_rows_examples"] == ["C"]


def test_a_lost_delta_fails_count_and_book(database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    venue = scenario(drop_market=False)
    venue.write(tmp_path / "truth.msgpack")
    venue.stored = [e for e in venue.stored if e.event_key != "k4"]  # the "no" delta of A never reached the database
    load(database, venue.stored)
    code, report = run_verify(capsys, "--truth", str(tmp_path / "truth.msgpack"), "--dsn", database, "--examples", "1")
    assert code == 1 and report["missing"] == 1 and report["missing_by_kind"] == {"delta": 1}
    assert report["books_mismatched"] == 1 and report["book_examples"][0].endswith("no 0.55: db - venue 7")


def test_books_are_rebuilt_by_the_databases_book_at(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify's book check is the database's own book_at (what `mdpipe book` and users query), not a second
    implementation: a book_at that drops one level is caught although the rows themselves are right."""
    venue = scenario(drop_market=False)
    venue.write(tmp_path / "truth.msgpack")
    load(database, venue.stored)
    with psycopg.connect(database, autocommit=True) as conn:
        body = conn.execute("SELECT pg_get_functiondef('book_at(text, timestamptz, text)'::regprocedure)").fetchone()[0]
        assert "HAVING sum(p.size) <> 0" in body
        conn.execute(body.replace("HAVING sum(p.size) <> 0", "HAVING sum(p.size) <> 0 AND p.side = 'yes'"))
    code, report = run_verify(capsys, "--truth", str(tmp_path / "truth.msgpack"), "--dsn", database, "--examples", "1")
    assert code == 1 and report["missing"] == 0 and report["books_mismatched"] == 1, report
    assert report["book_examples"][0].endswith("no 0.55: db - venue 7")


def test_a_truth_file_without_its_record_fails_with_one_line(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venue = scenario(drop_market=False)
    venue.write(tmp_path / "truth.msgpack")
    record_path(tmp_path / "truth.msgpack").unlink()
    assert main(["verify", "--truth", str(tmp_path / "truth.msgpack"), "--dsn", database]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no venue record at" in err[0] and "truth.record.msgpack" in err[0]


def test_a_venue_reads_only_its_own_rows(database: str, tmp_path: Path) -> None:
    """A database holding two venues (migration 0008): verify's reader, given one, sees only that venue's rows and
    books, exactly what it reads when that venue is alone."""
    from ops.verify_db import read_database
    from ops.verify_record import VenueRecord

    venue = scenario(drop_market=False)
    venue.write(tmp_path / "truth.msgpack")
    checkpoints = VenueRecord.build(read_record(record_path(tmp_path / "truth.msgpack"))).checkpoints
    load(database, venue.stored)
    name = venue.stored[0].venue
    with psycopg.connect(database) as conn:
        alone = read_database(conn, checkpoints, venue=name)
    other = [msgspec.structs.replace(e, venue="venue-b") for e in venue.stored]  # same keys, markets and times
    other += [  # and the other venue's books differ: every delta twice
        msgspec.structs.replace(e, event_key=e.event_key + "+") for e in other if e.__class__.__name__ == "BookDelta"
    ]
    load(database, other)
    with psycopg.connect(database) as conn:
        mine, both = read_database(conn, checkpoints, venue=name), read_database(conn, checkpoints)

    def same(a: Any) -> Any:
        return sorted(map(repr, a))

    assert alone.books and mine.books == alone.books
    assert same(mine.observed) == same(alone.observed) and same(mine.gaps) == same(alone.gaps)
    for rows in ("snapshots", "deltas"):
        got, want = getattr(mine, rows), getattr(alone, rows)
        assert {m: same(r) for m, r in got.items()} == {m: same(r) for m, r in want.items()}, rows
    assert len(list(both.observed)) > len(list(mine.observed))
