"""A Polymarket price_change row carries the order of the copy that saw the most: a gatherer that lost an earlier
change of a level in a millisecond counts its copy of a later one low; when dedup reads that copy first, a later copy
with the full count raises the emitted row's ordinal (an alias record), so the book rebuilt from the rows is right.

The rows are what the sink keeps of the events dedup emits: a row per event, and an alias record raises the row of
its key to its ordinal (the greatest wins), as :mod:`sink.ordinals` does in the database."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

from dedup_stream.logic import Deduper, MemoryStore, Origin, TimeRange, Verdict, decode_winner, store_key
from dedup_stream.normalise import decision_event
from schemas import BookDelta, RawFrame, decode_raw, encode_raw
from sink.book import Book, DeltaRow, SnapshotRow
from sink.book import book_at as rows_book_at
from venues.polymarket import wire
from venues.polymarket.book import book_at
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload

D = Decimal
ASSET = "1"
TS = 1_767_225_600_200
T0 = 1_767_225_600_000_000_000
# one level's changes in one venue millisecond, in the venue's order: the last one (size 7) is the level's size after it
CHANGES = ["5", "3", "7"]


def frames(gatherer: str, lost: set[int], keyer: PolymarketKeyer | None = None) -> list[bytes]:
    """The gatherer's raw frames of :data:`CHANGES` (those with an index in ``lost`` never reached it)."""
    keyer = keyer or PolymarketKeyer()
    out = []
    for i, size in enumerate(CHANGES):
        if i in lost:
            continue
        entry = json.dumps({"asset_id": ASSET, "price": "0.48", "size": size, "side": "BUY"}).encode()
        payload = change_payload("0xm", TS, entry)
        key, ordinal = keyer.change(TS, wire.decode("price_change", payload).price_changes[0])
        frame = RawFrame(venue="polymarket", gatherer=gatherer, conn=1, sid=None, seq=None, recv_ns=T0 + i,
                         kind="delta", market=ASSET, event_key=key, payload=payload, ordinal=ordinal)  # fmt: skip
        out.append(encode_raw(frame))
    return out


class Pipeline:
    """Dedup over a memory store, and the rows the sink keeps of what it emits."""

    def __init__(self, deduper: Deduper | None = None) -> None:
        self.deduper = deduper or Deduper(MemoryStore())
        self.offsets: dict[str, int] = {}
        self.rows: dict[str, DeltaRow] = {}
        self.aliases = 0

    def feed(self, value: bytes, offset: int | None = None) -> Verdict:
        frame = decode_raw(value)
        topic = f"raw.{frame.gatherer}"
        if offset is None:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
        decision = self.deduper.decide(value, Origin(topic, 0, offset))
        if decision.emit or decision.verdict is Verdict.ALIAS:
            event = decision_event(decision)
            assert isinstance(event, BookDelta)
            row = DeltaRow(event.ts_ms, event.event_key, event.side, event.price, event.delta, True, event.ordinal)
            stored = self.rows.get(event.event_key)
            if decision.verdict is Verdict.ALIAS:  # never a row: raises the row of its key (the greatest wins)
                assert event.alias
                self.aliases += 1
                if stored is not None and stored.ordinal < event.ordinal:
                    self.rows[event.event_key] = dataclasses.replace(stored, ordinal=event.ordinal)
            elif stored is None:  # the unique key absorbs a repeat
                self.rows[event.event_key] = row
        return decision.verdict

    def level(self) -> Decimal | None:
        """The level's size in the book rebuilt from the rows (both rebuilds: the venue's and the sink's)."""
        start = SnapshotRow(TS - 1, "b", [], [], frozenset())
        venue = book_at([start], list(self.rows.values()), TS)
        sink = rows_book_at([start], list(self.rows.values()), TS)
        assert venue is not None and sink is not None
        assert venue.normalised() == sink.normalised()
        return venue.yes.get(D("0.48"))


def test_a_copy_that_lost_an_earlier_change_read_first_gets_the_full_count() -> None:
    """g2 lost the first two changes: its copy of the last one counts 1 and is read first; g1's (3) raises the row."""
    g1, g2 = frames("g1", set()), frames("g2", {0, 1})
    p = Pipeline()
    verdicts = [p.feed(v) for v in [g2[0], *g1]]  # g2's copy of the last change (ordinal 1) first
    assert p.level() == D(7)  # the size after the last change, not the second one's 3
    assert verdicts == [Verdict.WON, Verdict.WON, Verdict.WON, Verdict.ALIAS]
    assert sorted(r.ordinal for r in p.rows.values()) == [1, 2, 3]
    assert len(p.rows) == 3 and p.aliases == 1
    want = Book.of([(D("0.48"), D(7))], [])
    assert rows_book_at([SnapshotRow(TS - 1, "b", [], [], frozenset())], list(p.rows.values()), TS) == want


def test_lower_and_equal_later_copies_emit_nothing() -> None:
    """A later copy that counts no more than the stored ordinal is a plain duplicate (no record)."""
    g1, g2, g3 = frames("g1", set()), frames("g2", {0}), frames("g3", set())
    p = Pipeline()
    for v in g1:
        assert p.feed(v) is Verdict.WON
    assert [p.feed(v) for v in g2 + g3] == [Verdict.DUPLICATE] * 5
    assert p.aliases == 0 and p.level() == D(7)


def test_the_raising_copy_read_again_after_a_crash_is_emitted_again() -> None:
    """Local state kept the raised ordinal but its alias record may never have left: the very copy that raised it,
    read again from its offset, is emitted again; another copy with that ordinal is not."""
    g1, g2, g3 = frames("g1", set()), frames("g2", {0, 1}), frames("g3", set())
    p = Pipeline()
    p.feed(g2[0])
    p.feed(g1[0])
    p.feed(g1[1])
    assert p.feed(g1[2], offset=7) is Verdict.ALIAS
    assert p.feed(g1[2], offset=7) is Verdict.ALIAS  # replayed: the same origin
    assert p.feed(g3[2]) is Verdict.DUPLICATE  # the same count from another copy: nothing new
    key = store_key(decode_raw(g2[0]))
    winner = decode_winner(p.deduper.store.get(key) or b"")
    assert (winner.gatherer, winner.ordinal, winner.by_topic, winner.by_offset) == ("g2", 3, "raw.g1", 7)
    assert p.level() == D(7)


def test_a_replay_range_emits_no_alias_for_an_event_before_it() -> None:
    g1, g2 = frames("g1", set()), frames("g2", {0, 1})
    p = Pipeline(Deduper(MemoryStore(), time_range=TimeRange(from_ns=T0 + 100, warmup_ns=10**9)))
    p.feed(g2[0])  # warm-up: remembered, not emitted
    assert [p.feed(v) for v in g1] == [Verdict.OUT_OF_RANGE, Verdict.OUT_OF_RANGE, Verdict.DUPLICATE]
    assert p.rows == {}


def test_a_winner_without_an_ordinal_is_stored_as_before() -> None:
    """Frames without an ordinal (a venue whose deltas add) store the five-field winner every worker wrote before."""
    d = Deduper(MemoryStore())
    frame = decode_raw(frames("g1", set())[0])
    frame.ordinal = 0
    d.decide(encode_raw(frame), Origin("raw.g1", 0, 4))
    stored = d.store.get(store_key(frame)) or b""
    assert stored[0] == 0x95  # fixarray of 5
    assert decode_winner(stored).ordinal == 0
