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

Quality signals (per gatherer: frames in, won, duplicates, lag behind the first copy, gap reports and their
windows by kind; events seen by only one gatherer) are plain integer counters in :class:`Stats`, exported by the
engines.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from dedup_stream.gaps import missed, parse_gap
from schemas import GapReport, RawFrame, SchemaError, decode_raw

__all__ = [
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
]


class Store(Protocol):
    """Key-value state of one dedup worker, partitioned like the raw topics (keys and values are bytes)."""

    def get(self, key: bytes, partition: int) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, partition: int) -> None: ...


class MemoryStore:
    """A dict-backed :class:`Store` (unit tests, benchmarks of the logic alone)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes, partition: int = 0) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, partition: int = 0) -> None:
        self.data[key] = value


class Origin(msgspec.Struct, frozen=True, array_like=True):
    """Where a raw frame was read: its Kafka coordinates."""

    topic: str
    partition: int
    offset: int


class Winner(msgspec.Struct, frozen=True, array_like=True):
    """The stored value for an event key: origin and receive time of the accepted (first) copy."""

    topic: str
    partition: int
    offset: int
    recv_ns: int
    gatherer: str

    def origin_is(self, origin: Origin) -> bool:
        return self.offset == origin.offset and self.partition == origin.partition and self.topic == origin.topic


_winner_encoder = msgspec.msgpack.Encoder()
_winner_decoder = msgspec.msgpack.Decoder(Winner)


def encode_winner(winner: Winner) -> bytes:
    return _winner_encoder.encode(winner)


def decode_winner(data: bytes) -> Winner:
    return _winner_decoder.decode(data)


def store_key(frame: RawFrame) -> bytes:
    """State key of a frame: market + event key (the table partition is the market's raw partition)."""
    return f"{frame.market}\x1f{frame.event_key}".encode()


class Verdict(enum.Enum):
    WON = "won"  # first copy: emit
    REEMIT = "reemit"  # replay of the origin that won before: emit again
    DUPLICATE = "duplicate"  # a later copy from another origin: drop
    GAP = "gap"  # a gatherer's gap report: count it and emit it as a coverage record (no state)
    INVALID = "invalid"  # not a RawFrame: dead-letter
    OUT_OF_RANGE = "out_of_range"  # outside a replay's time range: nothing emitted


EMITTING = frozenset({Verdict.WON, Verdict.REEMIT, Verdict.GAP})


@dataclass(slots=True)
class Decision:
    verdict: Verdict
    frame: RawFrame | None = None
    winner: Winner | None = None  # the stored winner (for DUPLICATE / REEMIT)
    error: str = ""  # for INVALID
    gap: GapReport | None = None  # for GAP: the report the frame carries

    @property
    def emit(self) -> bool:
        return self.verdict in EMITTING


@dataclass(slots=True)
class GathererStats:
    frames_in: int = 0
    won: int = 0
    duplicates: int = 0
    reemitted: int = 0
    gaps: int = 0  # gap reports
    gap_missing: int = 0  # messages the gatherer reported missing (sum of received - expected)
    gap_kinds: dict[str, int] = field(default_factory=dict)  # gap reports by kind (seq, down, resubscribe, ...)
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

    In memory only (a quality signal, not state): per event still inside the horizon, its store key (the very bytes
    object the store's cache holds already) -> the winning gatherer while no other copy came, None once one did.
    Copies arriving later than the horizon are not credited (the event was counted as single).
    """

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self._copies: dict[bytes, str | None] = {}  # store key -> winning gatherer, None once a second copy came
        self._order: deque[tuple[int, bytes]] = deque()  # (first recv_ns, store key)
        self.pending = 0

    def first(self, key: bytes, gatherer: str, now_ns: int) -> None:
        copies = self._copies
        if key in copies:
            return
        copies[key] = gatherer
        self._order.append((now_ns, key))

    def copy(self, key: bytes) -> None:
        copies = self._copies
        if key in copies:
            copies[key] = None

    def expire(self, now_ns: int, stats: Stats) -> None:
        cutoff = now_ns - self.horizon_ns
        order, copies = self._order, self._copies
        while order and order[0][0] <= cutoff:
            _, key = order.popleft()
            gatherer = copies.pop(key, None)
            if gatherer is not None:
                stats.gatherer(gatherer).singles += 1
        self.pending = len(copies)


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


class Deduper:
    """First-copy-wins over a :class:`Store`; one instance per worker (the store handles partitions)."""

    def __init__(self, store: Store, *, singles_horizon_ns: int = 30_000_000_000, time_range: TimeRange = _ALL):
        self.store = store
        self.stats = Stats()
        self.singles = SinglesTracker(singles_horizon_ns)
        self.range = time_range

    def decide(self, value: bytes | None, origin: Origin) -> Decision:
        """Classify one raw frame read at ``origin`` and update state and counters."""
        try:
            if value is None:
                raise SchemaError("RawFrame: empty value")
            frame = decode_raw(value)
        except SchemaError as exc:
            self.stats.invalid += 1
            return Decision(Verdict.INVALID, error=str(exc))
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
        key = store_key(frame)
        stored = self.store.get(key, origin.partition)
        if stored is None:
            rng = self.range
            if rng is not _ALL and not (rng.from_ns - rng.warmup_ns <= recv_ns < rng.to_ns):
                stats.out_of_range += 1
                return Decision(Verdict.OUT_OF_RANGE, frame)
            self.store.put(
                key,
                encode_winner(Winner(origin.topic, origin.partition, origin.offset, recv_ns, frame.gatherer)),
                origin.partition,
            )
            gstats.copy_lag_s = 0.0
            if rng is not _ALL and recv_ns < rng.from_ns:
                stats.out_of_range += 1  # warm-up: remembered, not emitted
                return Decision(Verdict.OUT_OF_RANGE, frame)
            gstats.won += 1
            self.singles.first(key, frame.gatherer, recv_ns)
            return Decision(Verdict.WON, frame)
        winner = decode_winner(stored)
        if winner.origin_is(origin):
            gstats.reemitted += 1
            if self.range is not _ALL and winner.recv_ns < self.range.from_ns:
                return Decision(Verdict.OUT_OF_RANGE, frame, winner)
            # write-back: the changelog may never have acknowledged this winner (see the module docstring)
            self.store.put(key, stored, origin.partition)
            return Decision(Verdict.REEMIT, frame, winner)
        gstats.duplicates += 1
        age_s = (recv_ns - winner.recv_ns) / 1e9
        gstats.copy_lag_s = age_s if age_s > 0.0 else 0.0
        if age_s > gstats.copy_lag_max_s:
            gstats.copy_lag_max_s = age_s
        if age_s > stats.match_age_max_s:
            stats.match_age_max_s = age_s
        self.singles.copy(key)
        return Decision(Verdict.DUPLICATE, frame, winner)

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
