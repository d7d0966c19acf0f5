"""First-copy-wins logic over an in-memory store: copies, reordering, delays, occurrence numbers, replays."""

from __future__ import annotations

import random

from dedup_stream.logic import (
    Deduper,
    MemoryStore,
    Origin,
    TimeRange,
    Verdict,
    decode_winner,
    store_key,
)
from schemas import GapReport, RawFrame, encode_gap, encode_raw
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

MARKET = "KXDEMO-26JAN01-T50"
T0 = 1_767_225_600_000_000_000


def raw(
    gatherer: str,
    event_key: str,
    recv_ns: int = T0,
    kind: str = "delta",
    market: str = MARKET,
    payload: bytes = b"{}",
) -> bytes:
    return encode_raw(
        RawFrame(
            venue=VENUE,
            gatherer=gatherer,
            conn=1,
            sid=1,
            seq=1,
            recv_ns=recv_ns,
            kind=kind,  # type: ignore[arg-type]
            market=market,
            event_key=event_key,
            payload=payload,
        )
    )


class Feeder:
    """Feeds frames with a per-topic offset counter, as Kafka would assign them."""

    def __init__(self, deduper: Deduper) -> None:
        self.deduper = deduper
        self.offsets: dict[str, int] = {}
        self.emitted: list[str] = []

    def feed(self, gatherer: str, event_key: str, recv_ns: int = T0, **kw: object) -> Verdict:
        topic = f"raw.{gatherer}"
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        decision = self.deduper.decide(raw(gatherer, event_key, recv_ns, **kw), Origin(topic, 0, offset))  # type: ignore[arg-type]
        if decision.emit:
            assert decision.frame is not None
            self.emitted.append(decision.frame.event_key)
        return decision.verdict


def test_first_copy_wins_and_later_copies_are_duplicates() -> None:
    f = Feeder(Deduper(MemoryStore()))
    assert f.feed("g2", "d:1", T0 + 5) == Verdict.WON
    assert f.feed("g1", "d:1", T0 + 9) == Verdict.DUPLICATE
    assert f.feed("g3", "d:1", T0 + 7) == Verdict.DUPLICATE
    assert f.emitted == ["d:1"]
    stats = f.deduper.stats
    assert (stats.gatherers["g2"].won, stats.gatherers["g1"].duplicates, stats.gatherers["g3"].duplicates) == (1, 1, 1)
    winner = decode_winner(f.deduper.store.get(store_key_of("d:1")) or b"")
    assert (winner.gatherer, winner.topic, winner.offset, winner.recv_ns) == ("g2", "raw.g2", 0, T0 + 5)


def store_key_of(event_key: str, market: str = MARKET) -> bytes:
    from schemas import decode_raw

    return store_key(decode_raw(raw("g1", event_key, market=market)))


def test_overlapping_reordered_delayed_copies_emit_each_event_once() -> None:
    rng = random.Random(7)
    keys = [f"t:{i}" for i in range(300)]
    copies: list[tuple[str, str, int]] = []
    for i, key in enumerate(keys):
        for g in ("g1", "g2", "g3"):
            if g == "g3" and i % 5 == 0:
                continue  # g3 missed some events: still one copy suffices
            copies.append((g, key, T0 + i * 1000 + rng.randrange(50_000)))
    rng.shuffle(copies)  # arbitrary interleaving across topics
    f = Feeder(Deduper(MemoryStore()))
    for g, key, t in copies:
        f.feed(g, key, t)
    assert sorted(f.emitted) == sorted(keys)
    stats = f.deduper.stats
    total_in = sum(g.frames_in for g in stats.gatherers.values())
    assert total_in == len(copies)
    assert sum(g.won for g in stats.gatherers.values()) == len(keys)
    assert sum(g.duplicates for g in stats.gatherers.values()) == len(copies) - len(keys)


def test_identical_bodies_with_different_occurrence_numbers_stay_distinct() -> None:
    f = Feeder(Deduper(MemoryStore()))
    body = "delta|yes|0.43|-5|1767225600123"
    for g in ("g1", "g2", "g3"):
        f.feed(g, f"{body}#1")
        f.feed(g, f"{body}#2")
    assert f.emitted == [f"{body}#1", f"{body}#2"]


def test_same_event_key_in_two_markets_is_two_events() -> None:
    f = Feeder(Deduper(MemoryStore()))
    assert f.feed("g1", "trade:abc", market="A") == Verdict.WON
    assert f.feed("g1", "trade:abc", market="B") == Verdict.WON
    assert f.feed("g2", "trade:abc", market="B") == Verdict.DUPLICATE


def test_replay_of_winning_origin_reemits_and_losing_origin_does_not() -> None:
    store = MemoryStore()
    d = Deduper(store)
    frame_g1 = raw("g1", "d:9", T0)
    frame_g2 = raw("g2", "d:9", T0 + 10)
    assert d.decide(frame_g1, Origin("raw.g1", 3, 41)).verdict == Verdict.WON
    assert d.decide(frame_g2, Origin("raw.g2", 3, 17)).verdict == Verdict.DUPLICATE
    # crash before the offsets were committed: both copies are read again from the same origins
    restarted = Deduper(store)
    assert restarted.decide(frame_g2, Origin("raw.g2", 3, 17)).verdict == Verdict.DUPLICATE
    again = restarted.decide(frame_g1, Origin("raw.g1", 3, 41))
    assert again.verdict == Verdict.REEMIT and again.emit
    assert again.frame is not None and again.frame.gatherer == "g1"
    # same bytes at another offset (e.g. a gatherer re-sent it) is a duplicate, not a re-emit
    assert restarted.decide(frame_g1, Origin("raw.g1", 3, 99)).verdict == Verdict.DUPLICATE
    assert restarted.stats.gatherers["g1"].reemitted == 1


def test_gap_reports_are_counted_and_forwarded_without_state() -> None:
    d = Deduper(MemoryStore())
    legacy = b'{"sid": 4, "expected": 10, "received": 13}'
    decision = d.decide(raw("g3", "", kind="gap", payload=legacy), Origin("raw.g3", 0, 0))
    assert decision.verdict == Verdict.GAP and decision.emit
    assert decision.gap is not None and decision.gap.kind == "seq" and decision.gap.markets == [MARKET]
    report = GapReport(kind="down", conn=2, from_ns=T0, to_ns=T0 + 5_000_000_000, markets=["*"])
    down = d.decide(raw("g3", "", kind="gap", payload=encode_gap(report)), Origin("raw.g3", 0, 1))
    assert down.verdict == Verdict.GAP and down.gap == report
    g3 = d.stats.gatherers["g3"]
    assert (g3.gaps, g3.gap_missing, g3.gap_kinds) == (2, 3, {"seq": 1, "down": 1})
    assert d.store.data == {}  # type: ignore[attr-defined]
    # the same report again (a replay, or another gatherer's identical window) is emitted again: never deduplicated
    assert d.decide(raw("g3", "", kind="gap", payload=encode_gap(report)), Origin("raw.g3", 0, 1)).emit


def test_malformed_gap_reports_are_invalid() -> None:
    d = Deduper(MemoryStore())
    for i, payload in enumerate(
        (b"not json", b'{"kind": "seq"}', b"{}", b'{"sid": 1, "expected": "x", "received": 2}')
    ):
        decision = d.decide(raw("g3", "", kind="gap", payload=payload), Origin("raw.g3", 0, i))
        assert decision.verdict == Verdict.INVALID and not decision.emit and decision.error.startswith("gap report")
    assert d.stats.invalid == 4 and d.stats.gatherers["g3"].gaps == 0


def test_gap_reports_of_a_replay_range_follow_their_receive_time() -> None:
    d = Deduper(MemoryStore(), time_range=TimeRange(from_ns=T0 + 100, to_ns=T0 + 200, warmup_ns=50))
    payload = b'{"sid": 4, "expected": 10, "received": 13}'
    verdicts = [
        d.decide(raw("g1", "", t, kind="gap", payload=payload), Origin("raw.g1", 0, i)).verdict
        for i, t in enumerate((T0 + 60, T0 + 150, T0 + 200))
    ]
    assert verdicts == [Verdict.OUT_OF_RANGE, Verdict.GAP, Verdict.OUT_OF_RANGE]


class ChangelogStore(MemoryStore):
    """Local state plus a changelog: puts reach the changelog only when acknowledged (see :meth:`ack`)."""

    def __init__(self, local: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.data = dict(local or {})
        self.unacked: list[tuple[bytes, bytes]] = []
        self.changelog: dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes, partition: int = 0) -> None:
        super().put(key, value, partition)
        self.unacked.append((key, value))

    def ack(self) -> None:
        self.changelog.update(self.unacked)
        self.unacked.clear()


def test_reemit_writes_its_winner_back_so_a_restore_from_the_changelog_keeps_it() -> None:
    """Worker A decides g1's copy first and writes it locally, but dies before the changelog acknowledged it (its
    event was held, never sent). Restarted on the same disk, A re-emits g1's copy from local state; the re-emit
    must reach the changelog too, or worker B (restoring from the changelog only) lets g3's late copy win."""
    a = ChangelogStore()
    first = Deduper(a).decide(raw("g1", "s:1", T0, kind="snapshot"), Origin("raw.g1", 0, 7))
    assert first.verdict == Verdict.WON and a.unacked and not a.changelog
    a.unacked.clear()  # SIGKILL: the changelog record never got acknowledged
    restarted = ChangelogStore(local=a.data)
    again = Deduper(restarted).decide(raw("g1", "s:1", T0, kind="snapshot"), Origin("raw.g1", 0, 7))
    assert again.verdict == Verdict.REEMIT
    assert restarted.unacked == [(store_key_of("s:1"), a.data[store_key_of("s:1")])]  # the same winner, again
    restarted.ack()  # the engines emit the re-emitted event only after this acknowledgement
    b = ChangelogStore(local=restarted.changelog)  # failover: a fresh worker restores from the changelog
    late = Deduper(b).decide(raw("g3", "s:1", T0 + 40_000_000, kind="snapshot"), Origin("raw.g3", 0, 3))
    assert late.verdict == Verdict.DUPLICATE and late.winner is not None and late.winner.gatherer == "g1"
    assert b.unacked == []  # duplicates write nothing


def test_undecodable_frames_are_invalid() -> None:
    d = Deduper(MemoryStore())
    for value in (b"\x00garbage", None, b""):
        decision = d.decide(value, Origin("raw.g1", 0, 0))
        assert decision.verdict == Verdict.INVALID and decision.error
    assert d.stats.invalid == 3


def test_lag_signals() -> None:
    d = Deduper(MemoryStore())
    d.decide(raw("g1", "a", T0), Origin("raw.g1", 0, 0))
    d.decide(raw("g2", "a", T0 + 2_500_000_000), Origin("raw.g2", 0, 0))
    d.decide(raw("g1", "b", T0 + 4_000_000_000), Origin("raw.g1", 0, 1))
    g1, g2 = d.stats.gatherers["g1"], d.stats.gatherers["g2"]
    assert g2.copy_lag_s == 2.5 and g2.copy_lag_max_s == 2.5 and g1.copy_lag_s == 0.0
    assert d.stats.match_age_max_s == 2.5
    newest = d.stats.last_recv_ns
    assert g1.sync_lag_s(newest) == 0.0 and g2.sync_lag_s(newest) == 1.5
    assert d.stats.take_interval() == 2.5 and d.stats.match_age_max_s == 0.0


def test_singles_counted_after_horizon() -> None:
    d = Deduper(MemoryStore(), singles_horizon_ns=1_000_000_000)
    d.decide(raw("g1", "a", T0), Origin("raw.g1", 0, 0))
    d.decide(raw("g2", "a", T0 + 100), Origin("raw.g2", 0, 0))
    d.decide(raw("g3", "b", T0 + 200), Origin("raw.g3", 0, 0))
    d.tick(T0 + 500_000_000)
    assert d.stats.gatherers["g3"].singles == 0 and d.singles.pending == 2
    d.tick(T0 + 2_000_000_000)
    assert d.stats.gatherers["g3"].singles == 1 and d.stats.gatherers["g1"].singles == 0
    assert d.singles.pending == 0


def _dict_entries(tracker: object) -> int:
    """Entries in the dicts a tracker holds, whatever it names them."""
    return sum(len(v) for v in vars(tracker).values() if isinstance(v, dict))


def test_singles_tracker_keeps_only_events_waiting_for_a_copy() -> None:
    """An event leaves the singles lookup at its second copy: the lookup holds the events of the copy lag, not every
    event of the horizon (300,000 at 10,000 events/s over the default 30 s; the old tracker kept each one, marked, so
    every frame's probe missed the CPU's cache). The count of singles and the events pending are unchanged."""
    d = Deduper(MemoryStore(), singles_horizon_ns=30_000_000_000)
    for i in range(1_000):
        t = T0 + i * 1_000_000
        d.decide(raw("g1", f"e{i}", t), Origin("raw.g1", 0, i))
        if i % 100:  # every hundredth event is seen by g1 only
            d.decide(raw("g2", f"e{i}", t + 500), Origin("raw.g2", 0, i))
            d.decide(raw("g3", f"e{i}", t + 900), Origin("raw.g3", 0, i))
    assert _dict_entries(d.singles) == 10  # the tracker's lookup: the 10 events no copy came for
    d.tick(T0 + 2_000_000_000)
    assert d.singles.pending == 1_000 and d.stats.gatherers["g1"].singles == 0
    d.tick(T0 + 40_000_000_000)
    assert d.stats.gatherers["g1"].singles == 10 and d.singles.pending == 0 and _dict_entries(d.singles) == 0


def test_singles_event_decided_new_again_gets_its_own_horizon() -> None:
    """The store lost an event's winner after its second copy (a partition wiped and read again): the next copy wins
    again and starts a horizon of its own; the event's first entry expires without a verdict, so a copy 11 s after
    the new first copy still counts (no single at the first entry's expiry, 10 s into the new horizon)."""
    s = 1_000_000_000
    d = Deduper(MemoryStore(), singles_horizon_ns=30 * s)
    assert d.decide(raw("g1", "e", T0), Origin("raw.g1", 0, 0)).verdict is Verdict.WON
    assert d.decide(raw("g2", "e", T0 + 1_000_000), Origin("raw.g2", 0, 0)).verdict is Verdict.DUPLICATE
    assert isinstance(d.store, MemoryStore)
    d.store.data.clear()
    assert d.decide(raw("g3", "e", T0 + 20 * s), Origin("raw.g3", 0, 0)).verdict is Verdict.WON
    d.tick(T0 + 30 * s + 1)
    assert d.stats.gatherers["g3"].singles == 0 and d.singles.pending == 1
    assert d.decide(raw("g1", "e", T0 + 31 * s), Origin("raw.g1", 0, 1)).verdict is Verdict.DUPLICATE
    d.tick(T0 + 60 * s)
    assert d.stats.gatherers["g3"].singles == 0 and d.singles.pending == 0


def test_time_range_warms_up_state_and_emits_only_inside() -> None:
    rng = TimeRange(from_ns=T0 + 100, to_ns=T0 + 200, warmup_ns=50)
    f = Feeder(Deduper(MemoryStore(), time_range=rng))
    assert f.feed("g1", "early", T0) == Verdict.OUT_OF_RANGE  # before the warm-up: ignored
    assert f.feed("g1", "warm", T0 + 60) == Verdict.OUT_OF_RANGE  # warm-up: remembered
    assert f.feed("g2", "warm", T0 + 120) == Verdict.DUPLICATE  # late copy of a pre-range event
    assert f.feed("g2", "in", T0 + 150) == Verdict.WON
    assert f.feed("g1", "in", T0 + 210) == Verdict.DUPLICATE
    assert f.feed("g1", "late", T0 + 200) == Verdict.OUT_OF_RANGE
    assert f.emitted == ["in"]
