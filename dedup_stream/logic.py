"""First-copy-wins deduplication of raw frames, pure logic (no Kafka, no Faust, no clock of its own).

The dedup stage feeds every raw frame (topics ``raw.<gatherer>``) through :meth:`Deduper.decide` together with
its origin ``(topic, partition, offset)``. The decision says whether the frame is the first copy of its venue
event (emit it), a later copy (drop it, count it), a replay of the very copy that won before (emit it again),
a gatherer gap report (count it and forward it as a coverage record, :mod:`dedup_stream.gaps`), or unreadable
(dead-letter it). :func:`dedup_stream.normalise.decision_event` turns an emitting decision into its event, for
both engines.

State is a :class:`Store` of ``store key -> Winner`` (RocksDB partitions in the engines, a dict in unit tests).
Replay rule: local state is written before the input offsets are committed, so after a crash a frame can find
its own key already stored although its output never left the process. The stored value is the *origin* of the
accepted copy, so a replay of that same origin is re-emitted (the sink's unique key absorbs the repeat), while a
copy from another origin is a duplicate. The store is bounded in time by its owner (RocksDB TTL); a key that has
expired simply starts over.

Write-back of re-emits. Every ``Store.put`` also goes to the store's changelog, and the engines hand an event to
the producer only once every changelog write made before it is acknowledged. A re-emit writes its winner again
(the same value), so it is held like a first sight: local state can hold a winner whose changelog record was never
acknowledged (written locally, then the worker died before the broker answered; its event was held and never left).
The restarted worker re-emits that winner from local state; without the write-back the event would leave while the
changelog still lacks its winner, and whoever restores the partition next from the changelog (after another crash
with a fresh workdir, or a failover) would let another gatherer's copy win: a second row with another winner, a
duplicate row where the row time is the winner's receive time. With it, an event that left the process always has
its winner in the changelog. Re-emits happen only for frames replayed after a crash, so the extra records are few.

Copies with more than one key (``RawFrame.alt_keys``, ``weak_key``; generic, the venue decides what they mean).
A copy is a duplicate when ANY of its keys (``event_key`` + ``alt_keys``) has a winner; the first copy registers
all of its keys, and so does every later copy (so a copy that shares only a key the winner did not carry still
finds it). A frame with a ``weak_key`` also keeps a short list under that weak key: one entry per emitted copy
(receive time, winner, the subscriptions (``weak_sub``) that contributed a copy with its seq, and the
``weak_refs`` of those copies). A copy none of whose keys was seen joins the nearest entry (by receive time, within
``weak_window_ns``) that can be its event; otherwise it wins. An entry cannot be when its subscription already
contributed to it (the venue sends a message once per subscription, so two equal bodies on one subscription are two
events), when they share a reference (two copies positioned against one reference that share no key sit at two
positions), or when another entry that both its subscription and a contributor's contributed to shows a different
seq offset between the two. A copy that joins is treated as the same event from then on (its keys and references
are registered; the references of a copy joined by receive time alone move with it if it is placed again, below).
Every join is counted (``weak_matches`` per gatherer): a join is a judgement by receive time, so
equal bodies inside the window that nothing else tells apart can be paired wrongly; the rules above then keep a
later copy of the wrongly joined copy's event from joining, so that event still lands (possibly twice) if any other
copy of it comes, and is merged only when that copy was its only one. The venue
says when its copies need weak matching and what remains (its lifecycle keying docstring). The weak lists are a
matching aid, persisted like every other key (changelog); a re-emit does not write them back.

Across an entry it is not. A copy whose references rule out the entries nearest to it can still reach, within the
window, an entry on their far side: a loose copy keyed forward against an anchor (a gatherer subscribed since the
anchor before it), read after a restarted gatherer whose copies won every equal body around it, skips their entries
(no forward key in common, both clean: two positions) and would join the first one that shares no reference with
it, past all of them -- and that alias is final: its key joins that row, and every other copy of its own message,
keyed alike, then meets that row by key (its message has no row). So a copy does not join an entry across an entry
it is provably not (a reference the latter keeps for good, and no contribution of its own subscription) when that
entry lies between the two in receive time, more than ``_WEAK_JUMP_NS`` (100 ms) from the one it would join, and a
subscription that contributed to both for good puts them in that same order on the stream: joining would mean its
receive clock is off by more than the stream it skips, whereas a message of its own on the near side of the skipped
entries needs no such skew. It wins instead (no farther entry, no re-placing by seq). The rule only refuses joins, so it
never merges two messages; when the copy really was that entry's message it lands twice (a duplicate is chosen over
a wrong merge).

Placed again by seq. The nearest entry is a guess when equal bodies are sent closer together than twice the spread
of the gatherers' receive clocks (a paused market paused again 50 ms later, read by one gatherer up to a read window
later than by another): a copy of the first message can be nearer the second one's entry and join it. Its
subscription's copy of the second message then finds the second entry taken and the first one ruled out by the seq
offset that the wrong join implied: it would win, a second row for the second message. So when a copy that carries
a seq can join no entry, and its subscription joined entries of the list by receive time alone (``_WeakEntry.timed``:
copies without references, and copies with references that joined an entry no reference of its own placed -- a copy
keyed against an anchor joining the entry of a copy keyed against none, a restarted gatherer's; a copy joining an
entry that holds references of copies joined for good is not moved again), the dedup stage tries to place them all
again by seq: the copy goes to its
nearest entry (one its subscription did not contribute to, or only by receive time, and that shares no reference
with it but those its own re-placeable copy brought) and, for a seq offset to one of
that entry's contributors, each of the earlier copies goes to the entry whose same contributor has its seq minus
that offset (or stays where it is if that contributor has no copy there), within the window of its receive time. The
new places are taken only if every one of them agrees with the seq offsets of every entry; otherwise the copy wins as
before. The earlier copies' alias records already went to the rows of their former entries, which keep those keys
(rows of the same body; every key still names one row).

Row identity of lifecycle events (``kind == "lifecycle"`` with several keys). Their rows are unique by event key
alone (no venue time), and the row takes the WINNER's ``event_key``; a dedup replay starts from a fresh state and
can read the copies in another order, so its winner, and that key, can differ from the live run's. So the event
carries every key of its winner (:class:`schemas.events.Lifecycle` ``keys``), and a later copy that brings keys the
event did not have (matched by one of its keys with others unseen, or joined by weak key) is :attr:`Verdict.ALIAS`:
a duplicate whose engine emits an alias record (its keys, and after a weak join ``Decision.link``, the joined
event's key) so that the sink adds them to the row (:mod:`sink.lifecycle`). Every key of every copy the live run
read thus ends up on the event's row, and a replay's winner, whichever copy it is, meets that row by one of them.
The keys such a copy adds are stored naming it (``Winner.by_topic``/``by_offset``, as an ordinal raise is): read
again after a crash, when every one of its keys is already stored, that very copy is an alias again (with the same
``link`` after a weak join, taken from the weak list) and those keys are written back, as a re-emit is (its alias
record, and their changelog records, may never have left); any other copy whose keys are all stored is a plain
duplicate.

Ordinals (``RawFrame.ordinal``: a replacing delta's order among the deltas of one venue millisecond, as the copy's
gatherer counted it; 0 on venues whose deltas commute). A gatherer that missed an earlier delta of the millisecond
counts one less, and its copy can be the one read first: the emitted event would sort before a delta that preceded
it. So the winner's stored value keeps the highest ordinal any copy of the event carried so far, and a later copy
with a higher one is :attr:`Verdict.ALIAS` too: a duplicate emitted as an alias record (the copy's delta marked
``alias``) with which the sink raises the stored row's ordinal, keeping the greatest (:mod:`sink.ordinals`; never a
row). The copy that raised it is stored with it (its topic and offset): read again after a crash, that copy is
emitted again (its alias record may never have left; the sink's greatest absorbs the repeat), as a re-emit is. A
copy none of whose gatherer's earlier deltas was lost counts them all, and none can count more than the venue sent,
so the stored ordinal is the true one as soon as one such copy was read (a copy keyed as an earlier identical body
carries the later one's count: that row, of the same size, moves to where its twin is; see the venue's keys).
Frames without an ordinal (every frame of a venue whose deltas add) pay one attribute test per later copy. Copies
with alternate or weak keys (below) do not raise ordinals (no venue gives both).

Quality signals (per gatherer: frames in, won, duplicates, lag behind the first copy, gap reports and their
windows by kind; events seen by only one gatherer) are plain integer counters in :class:`Stats`, exported by the
engines.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from dedup_stream.gaps import missed, parse_gap
from schemas import GapReport, RawFrame, SchemaError, decode_raw
from schemas.codec import DECODE_ERRORS
from schemas.raw import raw_decoder

# decide_at for a later copy whose winner a store's caches hold, in one C call (dedup_stream/_plaindup.c); None when
# built without a C compiler. True when it made every update decide_at makes for that copy; False, nothing changed,
# for anything else: decide_at then takes its own path from the start.
PLAIN_DUPLICATE_C: Callable[..., bool] | None
try:
    from dedup_stream._plaindup import plain_duplicate as PLAIN_DUPLICATE_C  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover - built without a C compiler
    PLAIN_DUPLICATE_C = None

WEAK_WINDOW_NS = 1_000_000_000  # default receive-time window of weak matching (the gatherers' receive clocks)
# Entries kept per weak key: the newest 64, and none received more than 10 minutes before the newest (the copies of
# one event reach the dedup stage as far apart as its raw topics lag one another, not only their receive spread).
_WEAK_KEEP = 64
_WEAK_KEEP_NS = 600_000_000_000
# A copy does not join an entry across an entry its references prove it is not when that one lies more than this
# nearer to it in receive time ("Across an entry it is not" in the module docstring): above the receive clocks'
# usual spread (a read window late, 65 ms in the demo), below the weak window.
_WEAK_JUMP_NS = 100_000_000

__all__ = [
    "PLAIN_DUPLICATE",
    "Decision",
    "Deduper",
    "GathererStats",
    "MemoryStore",
    "Origin",
    "SinglesTracker",
    "Stats",
    "Store",
    "TimeRange",
    "Verdict",
    "Winner",
    "decode_winner",
    "encode_winner",
    "store_key",
    "weak_match_fields",
    "weak_store_key",
]


class Store(Protocol):
    """Key-value state of one dedup worker, partitioned like the raw topics (keys and values are bytes).

    A store may also have ``caches``: a list of dicts, the same list object for the store's life, that ``get``
    consults first, in that order (a key found in one of them is what ``get`` returns). The hot path then decides a
    later copy whose winner they hold in C (:data:`PLAIN_DUPLICATE_C`)."""

    def get(self, key: bytes, partition: int) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, partition: int) -> None: ...


class MemoryStore:
    """A dict-backed :class:`Store` (unit tests, benchmarks of the logic alone)."""

    def __init__(self) -> None:
        self.caches: list[dict[bytes, bytes]] = [{}]  # the whole store (Store.caches)

    @property
    def data(self) -> dict[bytes, bytes]:
        return self.caches[0]

    @data.setter
    def data(self, value: dict[bytes, bytes]) -> None:  # a store replaced whole stays the one the caches name
        self.caches[0] = value

    def get(self, key: bytes, partition: int = 0) -> bytes | None:
        return self.caches[0].get(key)

    def put(self, key: bytes, value: bytes, partition: int = 0) -> None:
        self.caches[0][key] = value


class Origin(msgspec.Struct, frozen=True, array_like=True):
    """Where a raw frame was read: its Kafka coordinates."""

    topic: str
    partition: int
    offset: int


class Winner(msgspec.Struct, frozen=True, array_like=True):
    """The stored value for an event key: origin and receive time of the accepted (first) copy, and the highest
    ``RawFrame.ordinal`` any copy read so far carried, with the origin (topic, offset; the partition is the
    winner's) of the copy that carried it when that is not the winner (``by_offset`` -1: the winner itself). Under
    a key that a later copy added to a lifecycle event (its alias record; "Row identity" in the module docstring),
    ``by_*`` name that copy instead (lifecycle copies carry no ordinal). The trailing fields are written only when
    set (:func:`encode_winner`): a value without them reads as ordinal 0."""

    topic: str
    partition: int
    offset: int
    recv_ns: int
    gatherer: str
    ordinal: int = 0
    by_topic: str = ""
    by_offset: int = -1

    def origin_is(self, origin: Origin) -> bool:
        return self.offset == origin.offset and self.partition == origin.partition and self.topic == origin.topic

    def added_by(self, origin: Origin) -> bool:
        """Whether the ``by_*`` fields name ``origin`` (in its partition, which is the store's)."""
        return self.by_offset == origin.offset and self.by_topic == origin.topic


_winner_encoder = msgspec.msgpack.Encoder()
_winner_decoder = msgspec.msgpack.Decoder(Winner)


def encode_winner(winner: Winner) -> bytes:
    """The stored bytes of ``winner``: an array of its fields up to the last one that is set (the bytes of a
    winner without an ordinal are those of the five-field value every worker wrote before)."""
    w = winner
    if w.by_offset >= 0:
        return _winner_encoder.encode(
            (w.topic, w.partition, w.offset, w.recv_ns, w.gatherer, w.ordinal, w.by_topic, w.by_offset)
        )
    if w.ordinal:
        return _winner_encoder.encode((w.topic, w.partition, w.offset, w.recv_ns, w.gatherer, w.ordinal))
    return _winner_encoder.encode((w.topic, w.partition, w.offset, w.recv_ns, w.gatherer))


def decode_winner(data: bytes) -> Winner:
    return _winner_decoder.decode(data)


def _added_by(winner: Winner, origin: Origin) -> bytes:
    """The stored value of a key that the copy read at ``origin`` adds to ``winner``'s lifecycle event."""
    w = winner
    return encode_winner(
        Winner(w.topic, w.partition, w.offset, w.recv_ns, w.gatherer, w.ordinal, origin.topic, origin.offset)
    )


def _plain(winner: Winner, stored: bytes) -> bytes:
    """``stored`` (``winner``'s bytes) without its ``by_*`` fields: the value a weak list's entry holds."""
    w = winner
    if w.by_offset < 0:
        return stored
    return encode_winner(Winner(w.topic, w.partition, w.offset, w.recv_ns, w.gatherer, w.ordinal))


_decode_frame = raw_decoder.decode  # raises msgspec's errors: see _invalid_reason


def _invalid_reason(value: bytes | None) -> str:
    """Why ``value`` is not a RawFrame (the codec's SchemaError message; only invalid frames pay for it)."""
    if value is None:
        return "RawFrame: empty value"
    try:
        decode_raw(value)
    except SchemaError as exc:
        return str(exc)
    return "RawFrame: not decodable"  # pragma: no cover - the decoder refused what the codec accepts


def store_key(frame: RawFrame) -> bytes:
    """State key of a frame: market + event key (the table partition is the market's raw partition)."""
    return f"{frame.market}\x1f{frame.event_key}".encode()


def weak_store_key(frame: RawFrame) -> bytes:
    """State key of a frame's weak list (market + weak key, apart from every event key)."""
    return f"{frame.market}\x1f\x1dweak\x1f{frame.weak_key}".encode()


class _WeakEntry(msgspec.Struct, array_like=True):
    """One emitted copy in a weak list: its receive time, the winner's stored value, the contributing
    subscriptions (``gatherer:conn:sid`` -> the copy's seq, -1 if none), their copies' references, the winner's
    event key (what an alias record of a copy that joins names the event by; "" in entries stored before it) and
    the subscriptions whose copy joined by receive time alone (a seq, and no reference or none that meets a
    reference the entry keeps for good) -> that copy's receive time: the contributions that may be placed again (see
    "Placed again by seq"), with their references (``timed_refs``) and those of them no other copy brought to the
    entry (``timed_added``: they leave the entry with the copy). Entries stored before the last two read them empty;
    a worker older than them ignores them (msgspec's array-like structs skip trailing fields)."""

    recv_ns: int
    winner: bytes
    subs: dict[str, int]
    refs: list[str]
    key: str = ""
    timed: dict[str, int] = msgspec.field(default_factory=dict)
    # for each subscription in ``timed``: its copy's references, and those of them it added to ``refs`` (taken out
    # again when the copy is placed elsewhere)
    timed_refs: dict[str, list[str]] = msgspec.field(default_factory=dict)
    timed_added: dict[str, list[str]] = msgspec.field(default_factory=dict)


_weak_encoder = msgspec.msgpack.Encoder()
_weak_decoder = msgspec.msgpack.Decoder(list[_WeakEntry])


def _sub_of(frame: RawFrame) -> str:
    return frame.weak_sub or f"{frame.gatherer}:{frame.conn}:{frame.sid}"


def _seq_of(frame: RawFrame) -> int:
    return frame.seq if frame.seq is not None else -1


def _same_position(entry: _WeakEntry, sub: str, seq: int, entries: list[_WeakEntry]) -> bool:
    """False when another entry shows that ``sub``'s copy at ``seq`` sits elsewhere on the stream than ``entry``'s:
    an entry both ``sub`` and one of ``entry``'s subscriptions contributed to gives their seq offset exactly."""
    if seq < 0:
        return True
    for other_sub, other_seq in entry.subs.items():
        if other_seq < 0:
            continue
        for known in entries:
            mine, theirs = known.subs.get(sub, -1), known.subs.get(other_sub, -1)
            if known is not entry and mine >= 0 and theirs >= 0 and seq - other_seq != mine - theirs:
                return False
    return True


def _fits(entry: _WeakEntry, sub: str, entries: list[_WeakEntry]) -> bool:
    """Whether ``sub``'s contribution to ``entry`` agrees with the seq offsets every other entry shows."""
    seq = entry.subs.pop(sub)
    try:
        return _same_position(entry, sub, seq, entries)
    finally:
        entry.subs[sub] = seq


def _ref_clash(entry: _WeakEntry, sub: str, refs: list[str] | tuple[str, ...]) -> bool:
    """Whether a copy of ``sub`` with ``refs`` shares a reference with ``entry`` (apart from the references that
    ``sub``'s own copy joined by receive time brought to it)."""
    if not refs:
        return False
    own = entry.timed_added.get(sub, ())
    return any(r in entry.refs and r not in own for r in refs)


def _moving_refs(entry: _WeakEntry) -> list[str]:
    """The references of ``entry`` that copies joined by receive time brought (they leave with those copies)."""
    return [r for added in entry.timed_added.values() for r in added]


def _firm_clash(entry: _WeakEntry, refs: list[str] | tuple[str, ...]) -> bool:
    """Whether a copy with ``refs`` shares with ``entry`` a reference the entry keeps for good (one no copy joined
    by receive time brought): the copy is provably not that entry's message."""
    moving = _moving_refs(entry)
    return any(r in entry.refs and r not in moving for r in refs)


def _across(entry: _WeakEntry, recv_ns: int, apart: list[_WeakEntry]) -> bool:
    """Whether a copy received at ``recv_ns`` would join ``entry`` across an entry it is proved not to be (``apart``):
    one received between the two, more than :data:`_WEAK_JUMP_NS` from ``entry``, that a subscription which
    contributed to both for good (not by receive time) puts on the same side of ``entry`` on the stream as in
    receive time. See "Across an entry it is not" in the module docstring."""
    lo, hi = (recv_ns, entry.recv_ns) if recv_ns <= entry.recv_ns else (entry.recv_ns, recv_ns)
    for other in apart:
        if not lo < other.recv_ns < hi or abs(entry.recv_ns - other.recv_ns) <= _WEAK_JUMP_NS:
            continue
        for s, seq in entry.subs.items():
            other_seq = other.subs.get(s, -1)
            if seq < 0 or other_seq < 0 or s in entry.timed or s in other.timed:
                continue
            if (other_seq < seq) == (other.recv_ns < entry.recv_ns):
                return True
    return False


def _join_timed(entry: _WeakEntry, sub: str, seq: int, seen_ns: int, refs: list[str] | tuple[str, ...]) -> None:
    entry.subs[sub], entry.timed[sub] = seq, seen_ns
    entry.timed_refs[sub] = list(refs)
    added = [r for r in refs if r not in entry.refs]
    entry.timed_added[sub] = added
    entry.refs.extend(added)


def _firm_refs(entry: _WeakEntry) -> bool:
    """Whether ``entry`` has a reference that no copy joined by receive time brought (one it keeps for good)."""
    moving = _moving_refs(entry)
    return any(r not in moving for r in entry.refs)


def _add_firm_refs(entry: _WeakEntry, refs: list[str] | tuple[str, ...]) -> None:
    """Register the references of a copy that joined ``entry`` for good: they stay when re-placeable copies that
    brought the same ones move away."""
    if not refs:
        return
    entry.refs.extend(r for r in refs if r not in entry.refs)
    if entry.timed_added:
        entry.timed_added = {s: [r for r in added if r not in refs] for s, added in entry.timed_added.items()}


def _leave_timed(entry: _WeakEntry, sub: str) -> None:
    del entry.subs[sub], entry.timed[sub]
    entry.timed_refs.pop(sub, None)
    for r in entry.timed_added.pop(sub, ()):
        if r in entry.refs:
            entry.refs.remove(r)


def _realign(frame: RawFrame, sub: str, entries: list[_WeakEntry], window: int) -> _WeakEntry | None:
    """The entry a copy that no entry can take joins once its subscription's copies joined by receive time alone
    are placed again by one seq offset (None: it wins). See "Placed again by seq" in the module docstring."""
    seq = _seq_of(frame)
    refs = frame.weak_refs
    if seq < 0:
        return None
    placed = [(e, e.subs[sub], e.timed[sub], e.timed_refs.get(sub, [])) for e in entries if sub in e.timed]
    if not placed:
        return None
    recv_ns = frame.recv_ns
    free = [e for e in entries if (sub not in e.subs or sub in e.timed) and not _ref_clash(e, sub, refs)]
    target = min(free, key=lambda e: abs(e.recv_ns - recv_ns), default=None)  # the copy goes to its nearest entry
    if target is None or abs(target.recv_ns - recv_ns) > window:
        return None
    for other, other_seq in list(target.subs.items()):
        if other == sub or other_seq < 0:
            continue
        plan = _plan(entries, sub, other, seq - other_seq, placed, target, recv_ns, list(refs), window)
        if plan is not None and _place(entries, sub, placed, plan):
            return target
    return None


def _plan(
    entries: list[_WeakEntry],
    sub: str,
    other: str,
    offset: int,
    placed: list[tuple[_WeakEntry, int, int, list[str]]],
    target: _WeakEntry,
    recv_ns: int,
    refs: list[str],
    window: int,
) -> list[tuple[_WeakEntry, int, int, list[str]]] | None:
    """Where ``sub``'s copies go if its seq is ``other``'s plus ``offset``: (entry, seq, receive time, references)
    for each of its copies joined by receive time and for the new copy (into ``target``), None if one has nowhere
    to go."""
    by_seq = {e.subs[other]: e for e in entries if e.subs.get(other, -1) >= 0}
    plan = [(target, offset + target.subs[other], recv_ns, refs)]
    used = {id(target)}
    for entry, seq, seen_ns, copy_refs in placed:
        dest = by_seq.get(seq - offset)
        if dest is None:
            if other in entry.subs:  # ``other`` has this entry elsewhere on the stream: it cannot stay
                return None
            dest = entry
        if (
            id(dest) in used
            or abs(dest.recv_ns - seen_ns) > window
            or (sub in dest.subs and sub not in dest.timed)
            or _ref_clash(dest, sub, copy_refs)
        ):
            return None
        used.add(id(dest))
        plan.append((dest, seq, seen_ns, copy_refs))
    return plan


def _place(
    entries: list[_WeakEntry],
    sub: str,
    placed: list[tuple[_WeakEntry, int, int, list[str]]],
    plan: list[tuple[_WeakEntry, int, int, list[str]]],
) -> bool:
    """Move ``sub``'s copies joined by receive time to ``plan`` if every one of them then agrees with the seq offsets
    of every entry; otherwise leave them where they were."""
    saved = [(e.subs.copy(), e.timed.copy(), list(e.refs), dict(e.timed_refs), dict(e.timed_added)) for e in entries]
    for entry, _, _, _ in placed:
        _leave_timed(entry, sub)
    for entry, seq, seen_ns, refs in plan:
        _join_timed(entry, sub, seq, seen_ns, refs)
    if all(_fits(entry, sub, entries) for entry, _, _, _ in plan):
        return True
    for entry, (subs, timed, refs, timed_refs, timed_added) in zip(entries, saved, strict=True):
        entry.subs, entry.timed, entry.refs, entry.timed_refs, entry.timed_added = (
            subs,
            timed,
            refs,
            timed_refs,
            timed_added,
        )
    return False


class Verdict(enum.Enum):
    WON = "won"  # first copy: emit
    REEMIT = "reemit"  # replay of the origin that won before: emit again
    DUPLICATE = "duplicate"  # a later copy from another origin: drop
    GAP = "gap"  # a gatherer's gap report: count it and emit it as a coverage record (no state)
    INVALID = "invalid"  # not a RawFrame: dead-letter
    OUT_OF_RANGE = "out_of_range"  # outside a replay's time range: nothing emitted
    # a later copy that brings what the emitted event lacks: keys of a lifecycle event (the sink adds them to the
    # event's row; see "Row identity" in the docstring) or a higher ordinal of a delta (the sink raises the row's;
    # "Ordinals"): a duplicate (counted as one), and an alias record to emit
    ALIAS = "alias"


EMITTING = frozenset({Verdict.WON, Verdict.REEMIT, Verdict.GAP})


class Decision(msgspec.Struct):
    """What :meth:`Deduper.decide` made of one frame (a msgspec Struct: built in C, one per raw frame)."""

    verdict: Verdict
    frame: RawFrame | None = None
    winner: Winner | None = None  # the stored winner (for DUPLICATE / REEMIT)
    error: str = ""  # for INVALID
    gap: GapReport | None = None  # for GAP: the report the frame carries
    weak: bool = False  # for DUPLICATE / ALIAS: matched by weak key only (counted in weak_matches; the engines log it)
    link: str = ""  # for ALIAS after a weak match: a key of the event it joined (its copy shares none)

    @property
    def emit(self) -> bool:
        return self.verdict in EMITTING


# What :meth:`Deduper.decide_at` returns for a later copy matched by one of its keys: one shared instance (never
# mutate it), so the engines' hot path allocates nothing for two of every three frames and tests it by identity.
PLAIN_DUPLICATE = Decision(Verdict.DUPLICATE)


@dataclass(slots=True)
class GathererStats:
    frames_in: int = 0
    won: int = 0
    duplicates: int = 0
    reemitted: int = 0
    gaps: int = 0  # gap reports
    gap_missing: int = 0  # messages the gatherer reported missing (sum of received - expected)
    gap_kinds: dict[str, int] = field(default_factory=dict)  # gap reports by kind (seq, down, resubscribe, ...)
    weak_matches: int = 0  # copies matched to an emitted copy by weak key only (none of their keys was seen)
    singles: int = 0  # events only this gatherer delivered (within the singles horizon)
    last_recv_ns: int = 0  # receive time of this gatherer's newest frame
    copy_lag_s: float = 0.0  # delay of this gatherer's latest copy behind the first copy (0 when it won)
    copy_lag_max_s: float = 0.0  # max copy delay since the last :meth:`Stats.take_interval`

    def sync_lag_s(self, newest_ns: int) -> float:
        """Seconds this gatherer's newest frame is behind the newest frame of any gatherer ("sync lag")."""
        return max(0, newest_ns - self.last_recv_ns) / 1e9 if self.last_recv_ns else 0.0


@dataclass(slots=True)
class Stats:
    gatherers: dict[str, GathererStats] = field(default_factory=dict)
    invalid: int = 0
    out_of_range: int = 0
    match_age_max_s: float = 0.0  # age of the oldest first copy matched since the last take_interval()
    last_recv_ns: int = 0  # receive time of the newest frame seen

    def gatherer(self, gid: str) -> GathererStats:
        stats = self.gatherers.get(gid)
        if stats is None:
            stats = self.gatherers[gid] = GathererStats()
        return stats

    def take_interval(self) -> float:
        """Return and reset the interval maxima (called by the exporter each tick)."""
        age, self.match_age_max_s = self.match_age_max_s, 0.0
        for g in self.gatherers.values():
            g.copy_lag_max_s = g.copy_lag_s
        return age


class SinglesTracker:
    """Counts events delivered by only one gatherer, judged ``horizon_ns`` after their first copy.

    In memory only (a quality signal, not state). Two structures:

    - a dict of the events still *waiting* for a second copy: store key (the very bytes object the store's cache holds
      already) -> its first copy's receive time. A second copy removes its event at once, so the dict holds the
      events of the last copy lag (a few hundred at 10,000 events/s) plus the true singles, not every event of the
      horizon: it stays in the CPU's cache, and each frame's probe is a hit;
    - the first copies in arrival order (three deques: receive times, keys, winning gatherers), which the expiry
      walks: an entry counts as a single when its event is still waiting *with that entry's receive time*.

    Copies arriving later than the horizon are not credited (the event was counted as single). An event that is
    decided as new again after a copy removed it (the store lost its winner: a partition wiped and read again, or a
    store window shorter than the horizon) gets an entry of its own and a full horizon from that first copy; its
    earlier entry expires without a verdict.
    """

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self._waiting: dict[bytes, int] = {}  # store key -> first copy's recv_ns, until a second copy comes
        self._times: deque[int] = deque()  # first copies' recv_ns, in arrival order
        self._keys: deque[bytes] = deque()  # their store keys
        self._gatherers: deque[str] = deque()  # their gatherers

    @property
    def pending(self) -> int:
        """First copies inside the horizon (not yet judged)."""
        return len(self._times)

    def first(self, key: bytes, gatherer: str, now_ns: int) -> None:
        waiting = self._waiting
        size = len(waiting)
        waiting.setdefault(key, now_ns)
        if len(waiting) != size:
            self._times.append(now_ns)
            self._keys.append(key)
            self._gatherers.append(gatherer)

    def copy(self, key: bytes) -> None:
        self._waiting.pop(key, None)  # absent: a copy came before, or the event was judged already

    def expire(self, now_ns: int, stats: Stats) -> None:
        cutoff = now_ns - self.horizon_ns
        times, keys, gatherers, waiting = self._times, self._keys, self._gatherers, self._waiting
        while times and times[0] <= cutoff:
            t = times.popleft()
            key, gatherer = keys.popleft(), gatherers.popleft()
            if waiting.get(key) == t:  # no copy came for this entry (a later entry of the key has a later time)
                del waiting[key]
                stats.gatherer(gatherer).singles += 1


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A replay's range of first-copy receive times ``[from_ns, to_ns)``.

    Frames received up to ``warmup_ns`` before ``from_ns`` fill the state without being emitted, so that a
    late copy of an event that was first seen before the range is recognised as a duplicate.
    """

    from_ns: int = 0
    to_ns: int = 2**63 - 1
    warmup_ns: int = 0


_ALL = TimeRange()


def weak_match_fields(decision: Decision) -> dict[str, object]:
    """What the engines log about a weak match (a judgement, not a proof: see the module docstring)."""
    frame, winner = decision.frame, decision.winner
    assert frame is not None and winner is not None
    return {
        "market": frame.market,
        "gatherer": frame.gatherer,
        "conn": frame.conn,
        "sid": frame.sid,
        "event_key": frame.event_key,
        "winner_gatherer": winner.gatherer,
        "recv_delta_ms": round((frame.recv_ns - winner.recv_ns) / 1e6, 3),
    }


class Deduper:
    """First-copy-wins over a :class:`Store`; one instance per worker (the store handles partitions)."""

    def __init__(
        self,
        store: Store,
        *,
        singles_horizon_ns: int = 30_000_000_000,
        time_range: TimeRange = _ALL,
        weak_window_ns: int = WEAK_WINDOW_NS,
    ):
        self.store = store
        self.weak_window_ns = weak_window_ns
        self.stats = Stats()
        self.singles = SinglesTracker(singles_horizon_ns)
        self.range = time_range
        self._caches: list[dict[bytes, bytes]] | None = getattr(store, "caches", None)
        self._plain_duplicate = PLAIN_DUPLICATE_C if self._caches is not None else None

    def decide(self, value: bytes | None, origin: Origin) -> Decision:
        """Classify one raw frame read at ``origin`` and update state and counters."""
        return self.decide_at(value, origin.topic, origin.partition, origin.offset, full=True)

    def decide_at(self, value: bytes | None, topic: str, partition: int, offset: int, full: bool = False) -> Decision:
        """:meth:`decide` for an engine's hot path: the frame's coordinates as arguments (no :class:`Origin`), and,
        unless ``full``, a later copy matched by one of its keys returns the shared :data:`PLAIN_DUPLICATE` (no
        frame, no winner: nothing to build for two of every three frames). State and counters are updated exactly
        as by :meth:`decide`; a weak match still returns its own decision (the engines log it). Such a copy whose
        winner the store's caches hold (:class:`Store`), with no alternate key, weak key or ordinal, is decided in one
        C call when built (:data:`PLAIN_DUPLICATE_C`); anything else it hands back untouched."""
        fast = self._plain_duplicate
        if (
            fast is not None
            and not full
            and fast(value, topic, partition, offset, self._caches, self.stats, self.singles._waiting)
        ):
            return PLAIN_DUPLICATE  # a later copy whose winner the store's caches hold, decided in C
        try:
            frame: RawFrame = _decode_frame(value)  # the codec's decoder itself: no wrapper call per frame
        except DECODE_ERRORS:  # bytes that are not a RawFrame (schemas.codec)
            self.stats.invalid += 1
            return Decision(Verdict.INVALID, error=_invalid_reason(value))
        stats = self.stats
        gstats = stats.gatherers.get(frame.gatherer) or stats.gatherer(frame.gatherer)
        gstats.frames_in += 1
        recv_ns = frame.recv_ns
        if recv_ns > gstats.last_recv_ns:
            gstats.last_recv_ns = recv_ns
            if recv_ns > stats.last_recv_ns:
                stats.last_recv_ns = recv_ns
        if frame.kind == "gap":
            return self._gap(frame, gstats)
        key = f"{frame.market}\x1f{frame.event_key}".encode()  # store_key(frame), inlined (every frame)
        if frame.alt_keys or frame.weak_key:
            return self._decide_keys(frame, Origin(topic, partition, offset), gstats, key, full)
        stored = self.store.get(key, partition)
        if stored is None:
            rng = self.range
            if rng is not _ALL and not (rng.from_ns - rng.warmup_ns <= recv_ns < rng.to_ns):
                stats.out_of_range += 1
                return Decision(Verdict.OUT_OF_RANGE, frame)
            ordinal = frame.ordinal
            self.store.put(
                key,
                _winner_encoder.encode(
                    (topic, partition, offset, recv_ns, frame.gatherer, ordinal)
                    if ordinal
                    else (topic, partition, offset, recv_ns, frame.gatherer)
                ),  # encode_winner(Winner(...)), inlined (every first copy)
                partition,
            )
            gstats.copy_lag_s = 0.0
            if rng is not _ALL and recv_ns < rng.from_ns:
                stats.out_of_range += 1  # warm-up: remembered, not emitted
                return Decision(Verdict.OUT_OF_RANGE, frame)
            gstats.won += 1
            self.singles.first(key, frame.gatherer, recv_ns)
            return Decision(Verdict.WON, frame)
        winner = _winner_decoder.decode(stored)
        if winner.offset == offset and winner.partition == partition and winner.topic == topic:
            gstats.reemitted += 1
            if self.range is not _ALL and winner.recv_ns < self.range.from_ns:
                return Decision(Verdict.OUT_OF_RANGE, frame, winner)
            # write-back: the changelog may never have acknowledged this winner (see the module docstring)
            self.store.put(key, stored, partition)
            return Decision(Verdict.REEMIT, frame, winner)
        gstats.duplicates += 1
        age_s = (recv_ns - winner.recv_ns) / 1e9
        gstats.copy_lag_s = age_s if age_s > 0.0 else 0.0
        if age_s > gstats.copy_lag_max_s:
            gstats.copy_lag_max_s = age_s
        if age_s > stats.match_age_max_s:
            stats.match_age_max_s = age_s
        self.singles.copy(key)
        if frame.ordinal and self._raises(frame, winner, key, topic, partition, offset):
            return Decision(Verdict.ALIAS, frame, winner)
        return Decision(Verdict.DUPLICATE, frame, winner) if full else PLAIN_DUPLICATE

    def _raises(self, frame: RawFrame, winner: Winner, key: bytes, topic: str, partition: int, offset: int) -> bool:
        """Whether a later copy with an ordinal is emitted as an alias record that raises the emitted event's ordinal
        (see "Ordinals" in the module docstring): it carries a higher ordinal than any copy before it (stored as the
        event's), or it is the very copy that raised it before, read again after a crash (written back, as a
        re-emit is: its alias record may never have left)."""
        ordinal, w = frame.ordinal, winner
        if ordinal < w.ordinal or (ordinal == w.ordinal and not (w.by_offset == offset and w.by_topic == topic)):
            return False
        raised = Winner(w.topic, w.partition, w.offset, w.recv_ns, w.gatherer, ordinal, topic, offset)
        self.store.put(key, encode_winner(raised), partition)
        rng = self.range
        return rng is _ALL or w.recv_ns >= rng.from_ns  # an event before a replay's range was not emitted

    # -- copies with alternate keys and weak keys (see the module docstring) -------------------------------------
    def _decide_keys(
        self, frame: RawFrame, origin: Origin, gstats: GathererStats, key: bytes, full: bool = True
    ) -> Decision:
        store, partition = self.store, origin.partition
        keys = [key, *(f"{frame.market}\x1f{k}".encode() for k in frame.alt_keys)]
        found = [store.get(k, partition) for k in keys]
        stored = next((v for v in found if v is not None), None)
        if stored is not None:
            winner = decode_winner(stored)
            if winner.origin_is(origin):
                gstats.reemitted += 1
                if self.range is not _ALL and winner.recv_ns < self.range.from_ns:
                    return Decision(Verdict.OUT_OF_RANGE, frame, winner)
                for k in keys:  # write-back (module docstring), and any key not registered before
                    store.put(k, stored, partition)
                return Decision(Verdict.REEMIT, frame, winner)
            lifecycle = frame.kind == "lifecycle"
            if lifecycle and None not in found:
                again = self._alias_again(frame, origin, gstats, winner, stored, keys, found)
                if again is not None:
                    return again
            new_keys = False
            if None in found:  # keys this copy adds name it on a lifecycle event (see "Row identity")
                added = _added_by(winner, origin) if lifecycle else stored
                for k, v in zip(keys, found, strict=True):
                    if v is None:
                        store.put(k, added, partition)
                        new_keys = True
            if frame.weak_key:
                self._weak_contribute(frame, partition, _plain(winner, stored))
            decision = self._duplicate(frame, gstats, winner, keys)
            if new_keys and lifecycle:  # the row gains keys (row identity of lifecycle events)
                decision.verdict = Verdict.ALIAS
                return decision
            return decision if full else PLAIN_DUPLICATE
        if frame.weak_key:
            joined = self._weak_join(frame, partition)
            if joined is not None:
                winner_value, link = joined
                gstats.weak_matches += 1
                winner = decode_winner(winner_value)
                lifecycle = frame.kind == "lifecycle"
                added = _added_by(winner, origin) if lifecycle else winner_value
                for k in keys:
                    store.put(k, added, partition)
                decision = self._duplicate(frame, gstats, winner, keys)
                decision.weak = True
                if lifecycle:
                    decision.verdict = Verdict.ALIAS
                    decision.link = link
                return decision
        recv_ns = frame.recv_ns
        rng = self.range
        if rng is not _ALL and not (rng.from_ns - rng.warmup_ns <= recv_ns < rng.to_ns):
            self.stats.out_of_range += 1
            return Decision(Verdict.OUT_OF_RANGE, frame)
        value = encode_winner(Winner(origin.topic, origin.partition, origin.offset, recv_ns, frame.gatherer))
        for k in keys:
            store.put(k, value, partition)
        if frame.weak_key:
            self._weak_add(frame, partition, value)
        gstats.copy_lag_s = 0.0
        if rng is not _ALL and recv_ns < rng.from_ns:
            self.stats.out_of_range += 1
            return Decision(Verdict.OUT_OF_RANGE, frame)
        gstats.won += 1
        self.singles.first(key, frame.gatherer, recv_ns)
        return Decision(Verdict.WON, frame)

    def _alias_again(
        self,
        frame: RawFrame,
        origin: Origin,
        gstats: GathererStats,
        winner: Winner,
        stored: bytes,
        keys: list[bytes],
        found: list[bytes | None],
    ) -> Decision | None:
        """The alias record of a lifecycle copy that added keys to its event, decided again when that very copy is
        read again after a crash (its keys are stored naming it: see "Row identity"), with those keys written back as
        a re-emit writes its winner (their changelog records may never have left); None for any other copy."""
        mine = [
            (k, v)
            for k, v in zip(keys, found, strict=True)
            if v is not None and (winner if v == stored else decode_winner(v)).added_by(origin)
        ]
        if not mine:
            return None
        partition = origin.partition
        for k, v in mine:
            self.store.put(k, v, partition)
        decision = self._duplicate(frame, gstats, winner, keys)
        decision.verdict = Verdict.ALIAS
        if len(mine) == len(keys):  # it added every one of its keys: it joined by weak key (counted then)
            decision.weak = True
            decision.link = self._weak_link(frame, partition, _plain(winner, stored))
        return decision

    def _weak_link(self, frame: RawFrame, partition: int, winner: bytes) -> str:
        """The event key of the weak list's entry for ``winner`` ("" if the list no longer holds it)."""
        _, entries = self._weak_load(frame, partition)
        return next((e.key for e in entries if e.winner == winner), "")

    def _duplicate(self, frame: RawFrame, gstats: GathererStats, winner: Winner, keys: list[bytes]) -> Decision:
        stats = self.stats
        gstats.duplicates += 1
        age_s = (frame.recv_ns - winner.recv_ns) / 1e9
        gstats.copy_lag_s = age_s if age_s > 0.0 else 0.0
        if age_s > gstats.copy_lag_max_s:
            gstats.copy_lag_max_s = age_s
        if age_s > stats.match_age_max_s:
            stats.match_age_max_s = age_s
        for k in keys:
            self.singles.copy(k)
        return Decision(Verdict.DUPLICATE, frame, winner)

    def _weak_load(self, frame: RawFrame, partition: int) -> tuple[bytes, list[_WeakEntry]]:
        wkey = weak_store_key(frame)
        raw = self.store.get(wkey, partition)
        if raw is None:
            return wkey, []
        try:
            return wkey, _weak_decoder.decode(raw)
        except msgspec.DecodeError:
            return wkey, []

    def _weak_save(self, wkey: bytes, entries: list[_WeakEntry], newest_ns: int, partition: int) -> None:
        horizon = newest_ns - _WEAK_KEEP_NS
        kept = [e for e in entries if e.recv_ns >= horizon][-_WEAK_KEEP:]
        self.store.put(wkey, _weak_encoder.encode(kept), partition)

    def _weak_add(self, frame: RawFrame, partition: int, winner: bytes) -> None:
        wkey, entries = self._weak_load(frame, partition)
        entries.append(
            _WeakEntry(frame.recv_ns, winner, {_sub_of(frame): _seq_of(frame)}, list(frame.weak_refs), frame.event_key)
        )
        self._weak_save(wkey, entries, max(e.recv_ns for e in entries), partition)

    def _weak_contribute(self, frame: RawFrame, partition: int, winner: bytes) -> None:
        """A copy matched by one of its keys: its subscription contributed to the winner's entry."""
        wkey, entries = self._weak_load(frame, partition)
        sub = _sub_of(frame)
        for entry in entries:
            if entry.winner == winner:
                entry.subs.setdefault(sub, _seq_of(frame))
                _add_firm_refs(entry, frame.weak_refs)
                self._weak_save(wkey, entries, max(e.recv_ns for e in entries), partition)
                return

    def _weak_join(self, frame: RawFrame, partition: int) -> tuple[bytes, str] | None:
        """The winner (stored value, event key) of the entry a copy none of whose keys was seen joins by weak key
        (None: it wins)."""
        wkey, entries = self._weak_load(frame, partition)
        sub, recv_ns, window, refs = _sub_of(frame), frame.recv_ns, self.weak_window_ns, frame.weak_refs
        best: _WeakEntry | None = None
        for entry in entries:
            distance = abs(entry.recv_ns - recv_ns)
            if distance > window or sub in entry.subs or any(r in entry.refs for r in refs):
                continue
            if not _same_position(entry, sub, _seq_of(frame), entries):
                continue
            if best is None or distance < abs(best.recv_ns - recv_ns):
                best = entry
        if best is not None and refs:
            # entries of other subscriptions' copies within the window that a reference of its own proves it is not
            apart = [
                e for e in entries if sub not in e.subs and abs(e.recv_ns - recv_ns) <= window and _firm_clash(e, refs)
            ]
            if apart and _across(best, recv_ns, apart):
                return None  # its nearest entry lies across one it is not: it wins (no farther entry, no re-placing)
        if best is None:
            best = _realign(frame, sub, entries, window)  # places this copy too
            if best is None:
                return None
        else:
            seq = _seq_of(frame)
            if seq >= 0 and (not refs or not _firm_refs(best)):
                # joined by receive time alone, to an entry no anchor placed: may be placed again by seq
                _join_timed(best, sub, seq, recv_ns, refs)
            else:
                best.subs[sub] = seq
                _add_firm_refs(best, refs)
        self._weak_save(wkey, entries, max(recv_ns, *(e.recv_ns for e in entries)), partition)
        return best.winner, best.key

    def tick(self, now_ns: int | None = None) -> None:
        """Advance the singles horizon (by default to the newest receive time seen)."""
        self.singles.expire(self.stats.last_recv_ns if now_ns is None else now_ns, self.stats)

    def _gap(self, frame: RawFrame, gstats: GathererStats) -> Decision:
        """A gap report: counted, and emitted (no state: its key names its gatherer, a replay repeats the key)."""
        try:
            report = parse_gap(frame)
        except SchemaError as exc:
            self.stats.invalid += 1
            return Decision(Verdict.INVALID, frame, error=str(exc))
        gstats.gaps += 1
        gstats.gap_kinds[report.kind] = gstats.gap_kinds.get(report.kind, 0) + 1
        gstats.gap_missing += missed(report) or 0
        rng = self.range
        if rng is not _ALL and not (rng.from_ns <= frame.recv_ns < rng.to_ns):
            self.stats.out_of_range += 1
            return Decision(Verdict.OUT_OF_RANGE, frame, gap=report)
        return Decision(Verdict.GAP, frame, gap=report)
