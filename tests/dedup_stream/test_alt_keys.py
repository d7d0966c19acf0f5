"""Copies with alternate keys and weak keys (dedup_stream.logic): any key matches, weak joins follow their rules."""

from __future__ import annotations

from dedup_stream.logic import Decision, Deduper, MemoryStore, Origin, Verdict, decode_winner, encode_winner
from schemas import RawFrame, encode_raw
from venues import default_name

M = "KXDEMO-26JAN01-T50"
MS = 1_000_000
T0 = 1_767_225_600_000_000_000


class RecordingStore(MemoryStore):
    """A MemoryStore that also lists every key written (what goes to the changelog)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[bytes] = []

    def put(self, key: bytes, value: bytes, partition: int = 0) -> None:
        self.puts.append(key)
        super().put(key, value, partition)


class Feed:
    def __init__(self) -> None:
        self.store = RecordingStore()
        self.deduper = Deduper(self.store)
        self.offsets: dict[str, int] = {}
        self.last = Decision(Verdict.INVALID)

    def restart(self) -> None:
        """A crash: a new worker over the same local state (nothing in memory survives)."""
        self.deduper = Deduper(self.store)
        self.store.puts.clear()

    def __call__(
        self,
        gatherer: str,
        key: str,
        alt: tuple[str, ...] = (),
        *,
        t_ms: float = 0,
        sid: int = 1,
        seq: int = 1,
        weak: str = "",
        refs: tuple[str, ...] = (),
        sub: str = "",
        offset: int | None = None,
    ) -> tuple[Verdict, bool]:
        topic = f"raw.{gatherer}"
        if offset is None:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
        frame = RawFrame(
            venue=default_name(),
            gatherer=gatherer,
            conn=0,
            sid=sid,
            seq=seq,
            recv_ns=T0 + int(t_ms * MS),
            kind="lifecycle",
            market=M,
            event_key=key,
            payload=b"{}",
            alt_keys=list(alt),
            weak_key=weak,
            weak_refs=list(refs),
            weak_sub=sub,
        )
        decision = self.last = self.deduper.decide(encode_raw(frame), Origin(topic, 0, offset))
        return decision.verdict, decision.weak


def test_any_key_matches_and_every_copy_registers_all_of_its_keys() -> None:
    feed = Feed()
    assert feed("g1", "F")[0] is Verdict.WON
    # matched by an alternate key; registers X and B: a lifecycle copy that brought keys is emitted as an alias
    assert feed("g2", "X", ("F", "B"))[0] is Verdict.ALIAS
    assert feed("g3", "B")[0] is Verdict.DUPLICATE  # shares only a key the winner never carried
    assert feed("g3", "Y")[0] is Verdict.WON
    stats = feed.deduper.stats.gatherers
    assert stats["g1"].won == 1 and stats["g2"].duplicates == 1 and stats["g3"].duplicates == 1


def test_a_replayed_winner_with_alternate_keys_is_emitted_again() -> None:
    feed = Feed()
    assert feed("g1", "F", ("B",), offset=7)[0] is Verdict.WON
    assert feed("g1", "F", ("B",), offset=7)[0] is Verdict.REEMIT
    assert feed("g2", "B", offset=1)[0] is Verdict.DUPLICATE


def test_a_copy_none_of_whose_keys_was_seen_joins_the_same_body_from_another_subscription() -> None:
    feed = Feed()
    assert feed("g1", "B1", t_ms=0, weak="w:d", refs=("X", "<")) == (Verdict.WON, False)
    assert feed("g3", "own", t_ms=30, weak="w:d", refs=("Z", ">")) == (Verdict.ALIAS, True)
    assert feed("g2", "B1", t_ms=5, weak="w:d", refs=("X", "<")) == (Verdict.DUPLICATE, False)
    # the very copy that joined, read again (same state): its alias record again, the join not counted twice
    assert feed("g3", "own", t_ms=30, weak="w:d", refs=("Z", ">"), offset=0) == (Verdict.ALIAS, True)
    assert feed.deduper.stats.gatherers["g3"].weak_matches == 1


def test_a_weak_join_needs_another_subscription_no_common_reference_and_the_window() -> None:
    feed = Feed()
    assert feed("g1", "k1", t_ms=0, weak="w:d")[0] is Verdict.WON
    assert feed("g1", "k2", t_ms=20, weak="w:d")[0] is Verdict.WON  # same subscription: a second event
    assert feed("g2", "k3", t_ms=5000, weak="w:d")[0] is Verdict.WON  # outside the window
    feed2 = Feed()
    assert feed2("g1", "k1", t_ms=0, weak="w:d", refs=("X",))[0] is Verdict.WON
    assert feed2("g2", "k2", t_ms=10, weak="w:d", refs=("X",))[0] is Verdict.WON  # both against X, no common key
    assert feed2("g3", "k3", t_ms=10, weak="w:e", refs=())[0] is Verdict.WON  # another body


def _flap(x_ms: float) -> Feed:
    """g1's copies of two equal bodies 50 ms apart (seqs 10 and 12: a paused market paused again, activated between),
    then g2's copy of the first one (g2 numbers the stream 100 higher) received ``x_ms`` after g1's: it joins one."""
    feed = Feed()
    assert feed("g1", "a", t_ms=0, seq=10, weak="w:d")[0] is Verdict.WON
    assert feed("g1", "b", t_ms=50, seq=12, weak="w:d")[0] is Verdict.WON
    assert feed("g2", "x", t_ms=x_ms, seq=110, weak="w:d") == (Verdict.ALIAS, True)
    return feed


def test_a_weak_join_picks_the_nearest_copy_and_respects_known_seq_offsets() -> None:
    feed = _flap(2)  # x joins a, the nearest
    # its seq 113 sits 3 after a on g2, i.e. seq 13 on g1: not b (seq 12) although b is near in time
    assert feed("g2", "y", t_ms=49, seq=113, weak="w:d") == (Verdict.WON, False)


def test_copies_of_equal_bodies_read_later_than_half_their_spacing_still_make_one_event_each() -> None:
    # g2 read its copy of the first one 28 ms late (its read window): nearer b than a, so it joins b ...
    feed = _flap(28)
    # ... and its copy of the second one (2 after it on g2, as b is 2 after a on g1) is that same message, not a
    # third: g2's copies are placed again by seq (x to a, y to b), where the old rules kept y out of a: it won
    assert feed("g2", "y", t_ms=78, seq=112, weak="w:d") == (Verdict.ALIAS, True)
    # the offsets now agree on every entry: a third subscription's copies join one each, and g2's next message wins
    assert feed("g3", "p", t_ms=3, seq=1010, weak="w:d") == (Verdict.ALIAS, True)
    assert feed("g3", "q", t_ms=53, seq=1012, weak="w:d") == (Verdict.ALIAS, True)
    assert feed("g2", "z", t_ms=100, seq=114, weak="w:d")[0] is Verdict.WON
    stats = feed.deduper.stats.gatherers
    assert (stats["g1"].won, stats["g2"].won, stats["g3"].won) == (2, 1, 0)


def test_three_equal_bodies_read_late_are_placed_again_in_turn() -> None:
    # three equal bodies 20 ms apart; g2 reads 11 ms late: each of its copies is nearer the next one's entry
    feed = Feed()
    for key, t, seq in (("a", 20, 1), ("b", 40, 2), ("c", 60, 3)):
        assert feed("g1", key, t_ms=t, seq=seq, weak="w:d")[0] is Verdict.WON
    assert feed("g2", "x", t_ms=31, seq=101, weak="w:d") == (Verdict.ALIAS, True)  # to b
    assert feed("g2", "y", t_ms=51, seq=102, weak="w:d") == (Verdict.ALIAS, True)  # to c (same offset as x)
    # z is 3rd on g2: a, b, c get x, y, z by one seq offset (the old rules kept z out of a: a fourth row)
    assert feed("g2", "z", t_ms=71, seq=103, weak="w:d") == (Verdict.ALIAS, True)
    assert feed.deduper.stats.gatherers["g2"].won == 0


def test_a_copy_is_placed_again_only_where_the_seq_offsets_agree() -> None:
    feed = _flap(28)  # x joins b
    # 3 after x on g2, but b is 2 after a on g1: another message (a third equal body), not x's sibling
    assert feed("g2", "y", t_ms=78, seq=113, weak="w:d") == (Verdict.WON, False)


def test_a_copy_is_placed_again_only_in_its_nearest_entry() -> None:
    # two pairs of equal bodies 400 ms apart, numbered 3, 4, 7, 8 by g2's subscriptions; the first one lost 4
    feed = Feed()
    for key, t, seq in (("p3", 130, 3), ("p7", 550, 7), ("p8", 600, 8)):
        assert feed("g2", key, t_ms=t, seq=seq, weak="w:d", sub="g2a")[0] is Verdict.WON
    assert feed("g2", "q3", t_ms=130, seq=3, weak="w:d", sub="g2b") == (Verdict.ALIAS, True)
    # q4 is 4 on g2b: no entry has it. Placing q3 at 7 and q4 at 8 agrees with every seq offset too, but q4 is
    # nearest p3's entry (taken by q3 by seq): it wins
    assert feed("g2", "q4", t_ms=150, seq=4, weak="w:d", sub="g2b") == (Verdict.WON, False)


def test_a_subscription_is_told_apart_by_its_instance_not_by_gatherer_conn_and_sid() -> None:
    # a restarted gatherer (or a reconnect) numbers its connections and sids alike again
    feed = Feed()
    assert feed("g3", "k1", t_ms=0, weak="w:d", sub="g3:1:1@100")[0] is Verdict.WON
    assert feed("g3", "k2", t_ms=3, weak="w:d", sub="g3:1:1@900") == (Verdict.ALIAS, True)
    assert feed("g3", "k3", t_ms=6, weak="w:d", sub="g3:1:1@900")[0] is Verdict.WON  # that instance contributed


def _frame(gatherer: str, key: str, alt: tuple[str, ...] = (), kind: str = "lifecycle", weak: str = "") -> RawFrame:
    return RawFrame(
        venue=default_name(),
        gatherer=gatherer,
        conn=0,
        sid=1,
        seq=1,
        recv_ns=T0,
        kind=kind,  # type: ignore[arg-type]
        market=M,
        event_key=key,
        payload=b"{}",
        alt_keys=list(alt),
        weak_key=weak,
    )


def test_an_alias_names_the_event_it_joined_and_only_lifecycle_copies_with_new_keys_are_aliases() -> None:
    deduper = Deduper(MemoryStore())
    decide = deduper.decide
    assert decide(encode_raw(_frame("g1", "B1", ("B2",), weak="w:d")), Origin("raw.g1", 0, 0)).verdict is Verdict.WON
    joined = decide(encode_raw(_frame("g3", "F", weak="w:d")), Origin("raw.g3", 0, 0))  # shares no key: weak join
    assert (joined.verdict, joined.weak, joined.link) == (Verdict.ALIAS, True, "B1")
    same = decide(encode_raw(_frame("g2", "B1", ("B2",), weak="w:d")), Origin("raw.g2", 0, 0))
    assert (same.verdict, same.link) == (Verdict.DUPLICATE, "")  # nothing new: no alias record
    more = decide(encode_raw(_frame("g2", "F", ("B3",), weak="w:d")), Origin("raw.g2", 0, 1))
    assert (more.verdict, more.weak, more.link) == (Verdict.ALIAS, False, "")  # matched by F, brings B3
    # the same shapes on another kind (a venue's deltas with alternate keys) stay plain duplicates
    assert decide(encode_raw(_frame("g1", "d1", kind="delta")), Origin("raw.g1", 0, 1)).verdict is Verdict.WON
    other = decide(encode_raw(_frame("g2", "d1", ("d2",), kind="delta")), Origin("raw.g2", 0, 2))
    assert other.verdict is Verdict.DUPLICATE


def _key(key: str) -> bytes:
    return f"{M}\x1f{key}".encode()


def test_a_copy_that_added_keys_is_an_alias_again_when_read_again_after_a_crash() -> None:
    feed = Feed()
    assert feed("g1", "F")[0] is Verdict.WON
    assert feed("g2", "X", ("F", "B"))[0] is Verdict.ALIAS  # adds X and B to F's row; raw.g2 offset 0
    feed.restart()  # died before the alias record was acknowledged: raw.g2 offset 0 is read again
    assert feed("g2", "X", ("F", "B"), offset=0)[0] is Verdict.ALIAS
    assert feed.last.link == "" and not feed.last.weak
    assert sorted(feed.store.puts) == [_key("B"), _key("X")]  # written back (their changelog records may be lost)
    assert decode_winner(feed.store.data[_key("X")]).origin_is(Origin("raw.g1", 0, 0))  # still F's winner
    feed.store.puts.clear()
    # any other copy with every key stored is a plain duplicate and writes nothing
    assert feed("g2", "X", ("F", "B"), offset=5)[0] is Verdict.DUPLICATE
    assert feed("g3", "B", ("X",))[0] is Verdict.DUPLICATE
    assert feed("g3", "B")[0] is Verdict.DUPLICATE  # a copy without alternate keys (the plain path)
    assert feed.store.puts == []
    assert feed("g1", "F", offset=0)[0] is Verdict.REEMIT  # the winner itself is still recognised


def test_a_later_copy_adding_keys_names_itself_not_the_copy_it_matched() -> None:
    feed = Feed()
    assert feed("g1", "F")[0] is Verdict.WON
    assert feed("g2", "X", ("F",))[0] is Verdict.ALIAS  # raw.g2 offset 0 adds X
    assert feed("g3", "Y", ("X",))[0] is Verdict.ALIAS  # matched by X (named after raw.g2 0), adds Y; raw.g3 0
    feed.restart()
    assert feed("g3", "Y", ("X",), offset=0)[0] is Verdict.ALIAS
    assert feed.store.puts == [_key("Y")]  # only the key it added
    assert feed("g2", "X", ("F",), offset=0)[0] is Verdict.ALIAS
    assert feed.store.puts == [_key("Y"), _key("X")]


def test_a_copy_that_joined_by_weak_key_is_an_alias_with_its_link_again_after_a_crash() -> None:
    feed = Feed()
    assert feed("g1", "B1", t_ms=0, weak="w:d", refs=("X", "<")) == (Verdict.WON, False)
    assert feed("g3", "own", ("own2",), t_ms=30, weak="w:d", refs=("Z", ">")) == (Verdict.ALIAS, True)
    assert feed.last.link == "B1"
    feed.restart()
    assert feed("g3", "own", ("own2",), t_ms=30, weak="w:d", refs=("Z", ">"), offset=0) == (Verdict.ALIAS, True)
    assert feed.last.link == "B1"  # the alias record names the joined event again
    assert sorted(feed.store.puts) == [_key("own"), _key("own2")]
    assert feed.deduper.stats.gatherers["g3"].weak_matches == 0  # judged once, before the crash
    # another copy of either event is a plain duplicate; the winner's own subscription still contributes
    assert feed("g2", "own", t_ms=31, weak="w:d", refs=("Z", ">")) == (Verdict.DUPLICATE, False)
    assert feed("g2", "B1", t_ms=5, weak="w:d", refs=("X", "<")) == (Verdict.DUPLICATE, False)


def test_keys_stored_by_the_old_format_still_decode_and_the_copy_is_a_duplicate() -> None:
    feed = Feed()
    assert feed("g1", "F")[0] is Verdict.WON
    old_value = feed.store.data[_key("F")]
    assert old_value == encode_winner(decode_winner(old_value))  # five fields, as every worker wrote before
    # keys added by a copy under the old code hold the winner's plain value: that copy cannot be told apart
    feed.store.data[_key("X")] = feed.store.data[_key("B")] = old_value
    assert feed("g2", "X", ("F", "B"), offset=0)[0] is Verdict.DUPLICATE
