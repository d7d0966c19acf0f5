"""One batch of consumed records on its way into the database (pure: no Kafka, no database).

The loader feeds every consumed chunk to :meth:`Batch.add_many`; the batch keeps the binary COPY rows per
table, the latest market reference per ticker, the records that could not be decoded (dead letters), and
the next offset to consume per (topic, partition): the offsets the store writes in the same transaction.
:func:`build_rows` is the hot loop (decode + encode): in C when ``sink._rowcodec`` was built (see
:mod:`sink.rowcodec`), else in Python (~4-5 us per record on the development machine, mostly the decimal
strings -> binary ``numeric``); with a :class:`Helper`, another process runs it on the tail of each chunk.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from schemas import DeadLetter, MarketRef, SchemaError, decode_market
from schemas.codec import DECODE_ERRORS, SCHEMA_VERSION
from sink.latency import stamp
from sink.records import RecDelta, RecLifecycle, decode_record, record_decoder
from sink.rowcodec import FastBuild, fast_build
from sink.rows import BUILDERS, build_row

__all__ = ["Batch", "Helper", "Message", "Source", "build_rows", "dead_letter"]

STAGE = "sink"
_decode = record_decoder().decode


class Helper(Protocol):
    """What the batch needs of a row-building helper process (:class:`sink.helper.RowHelper`)."""

    share: float  # fraction of a chunk's events the helper builds
    min_records: int  # smaller chunks are built here

    def submit(self, payloads: list[bytes], from_ms: int | None, to_ms: int | None) -> bool: ...
    def result(self) -> tuple[dict[str, list[bytes]], list[tuple[int, str]], int, bytes] | None: ...


class Message(Protocol):
    """What the batch needs of a consumed Kafka message (confluent_kafka.Message has these)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Source:
    """A stand-in Message (tests, benchmarks): where a row came from and its bytes."""

    src_topic: str
    src_partition: int
    src_offset: int
    payload: bytes

    def topic(self) -> str:
        return self.src_topic

    def partition(self) -> int:
        return self.src_partition

    def offset(self) -> int:
        return self.src_offset

    def value(self) -> bytes:
        return self.payload


@dataclass
class Batch:
    events_topic: str = "events"
    markets_topic: str = "markets"
    from_ms: int | None = None  # keep only events with from_ms <= ts_ms < to_ms (replay of a time range)
    to_ms: int | None = None
    rows: dict[str, list[bytes]] = field(default_factory=dict)
    markets: dict[tuple[str, str], tuple[MarketRef, Message]] = field(default_factory=dict)  # (venue, ticker) ->
    dead: list[DeadLetter] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    size: int = 0  # messages added (rows + markets + dead + filtered)
    skipped: int = 0  # events outside [from_ms, to_ms)
    started: float = 0.0  # monotonic time the batch opened: its batch_ms counts from here (sink.flush.opened_at)
    # every events-topic message, in order: which message made which row is re-derived only when needed
    # (:meth:`sources_of`, the rare slow path) instead of being recorded per row
    event_msgs: list[Message] = field(default_factory=list)
    # with the sink's hop trace on (sink.hop_trace, see sink.trace), the events runs: (partition, first offset, last
    # offset, read_ns)
    runs: list[tuple[int, int, int, int]] | None = None
    # each row's origin time (native int64 Unix ms, in no particular order) for the venue -> database latency
    # histogram (:mod:`sink.latency`); None = not observed (replays)
    stamps: bytearray | None = None
    helper: Helper | None = field(default=None, repr=False)  # builds part of each chunk in another process
    fast: FastBuild | None = field(default_factory=fast_build, repr=False)  # the C row builder (None: Python)
    _sinks: dict[type, _Sink] = field(default_factory=dict, repr=False)

    def add(self, msg: Message) -> None:
        self.add_many((msg,))

    def add_many(self, msgs: Iterable[Message], read_ns: int = 0, opened: float | None = None) -> None:
        """Add consumed messages (in consumption order; messages with an error must be filtered out); ``read_ns``:
        when consume() returned them (kept per run of one partition for the hop trace, see :mod:`sink.trace`);
        ``opened``: for the first messages of a batch, the monotonic time from which its ``batch_ms`` counts
        (:func:`sink.flush.opened_at`; default: now)."""
        events_topic = self.events_topic
        offsets = self.offsets
        runs = self.runs
        if not self.size:
            self.started = time.monotonic() if opened is None else opened
        n = 0
        events: list[Message] = []
        append = events.append
        # consume() returns runs of one partition in offset order: the next offset is set once per run
        key: tuple[str | None, int | None] = (None, None)
        first: Message | None = None
        last: Message | None = None
        for msg in msgs:
            n += 1
            topic = msg.topic()
            partition = msg.partition()
            if partition != key[1] or topic != key[0]:
                if last is not None:
                    offsets[key] = last.offset() + 1  # type: ignore[index, operator]
                    if runs is not None and key[0] == events_topic:
                        runs.append((key[1], first.offset(), last.offset(), read_ns))  # type: ignore[arg-type, union-attr]
                key = (topic, partition)
                first = msg
            last = msg
            if topic == events_topic:
                append(msg)
            elif topic == self.markets_topic:
                self._add_market(msg.value() or b"", msg)
        if last is not None:
            offsets[key] = last.offset() + 1  # type: ignore[index, operator]
            if runs is not None and key[0] == events_topic:
                runs.append((key[1], first.offset(), last.offset(), read_ns))  # type: ignore[arg-type, union-attr]
        self.size += n
        if not events:
            return
        self.event_msgs += events
        payloads = [msg.value() or b"" for msg in events]
        helper = self.helper
        if helper is None or len(payloads) < helper.min_records:
            built = build_rows(payloads, self.from_ms, self.to_ms, self.rows, self._sinks, self.fast, self.stamps)
            self._merge(events, 0, built)
            return
        # the helper process builds the tail while this thread builds the head; rows stay in message order
        # (head rows, then tail rows, per table), which :meth:`sources_of` relies on
        cut = len(payloads) - int(len(payloads) * helper.share)
        sent = helper.submit(payloads[cut:], self.from_ms, self.to_ms)
        head = build_rows(payloads[:cut], self.from_ms, self.to_ms, self.rows, self._sinks, self.fast, self.stamps)
        self._merge(events, 0, head)
        tail = helper.result() if sent else None
        if tail is None:  # the helper failed: build the tail here
            tail_rows = build_rows(
                payloads[cut:], self.from_ms, self.to_ms, self.rows, self._sinks, self.fast, self.stamps
            )
            self._merge(events, cut, tail_rows)
            return
        rows, dead, skipped, stamps = tail
        if self.stamps is not None:
            self.stamps += stamps
        for table, built in rows.items():
            if built:  # never an empty table (see build_rows)
                self.rows.setdefault(table, []).extend(built)
        self._merge(events, cut, (dead, skipped))

    def _merge(self, events: list[Message], base: int, outcome: tuple[list[tuple[int, str]], int]) -> None:
        dead, skipped = outcome
        self.skipped += skipped
        for index, reason in dead:
            self.dead.append(dead_letter(reason, events[base + index]))

    def sources_of(self, table: str) -> list[Message]:
        """The message of each row of ``table``, in row order (re-derived from :attr:`event_msgs`: the decode
        and the filters are deterministic, so the same messages give rows again, in the same order)."""
        out: list[Message] = []
        for msg in self.event_msgs:
            try:
                rec = decode_record(msg.value() or b"")
                if (self.from_ms is not None and rec.ts_ms < self.from_ms) or (
                    self.to_ms is not None and rec.ts_ms >= self.to_ms
                ):
                    continue
                name, _ = build_row(rec)  # a row that could not be encoded is a dead letter, not a row
                if name == table:
                    out.append(msg)
            except (SchemaError, ValueError, OverflowError, struct.error):
                continue
        return out

    def _add_market(self, payload: bytes, src: Message) -> None:
        if not payload:  # compaction tombstone: nothing to upsert
            return
        try:
            ref = decode_market(payload)
        except SchemaError as exc:
            self.dead.append(dead_letter(f"undecodable market: {exc}", src))
            return
        key = (ref.venue, ref.ticker)  # the markets table's key: a market name may exist at two venues
        old = self.markets.get(key)
        if old is None or old[0].updated_ns <= ref.updated_ns:
            self.markets[key] = (ref, src)

    def absorb(self, other: Batch) -> None:
        """Take ``other``'s records (another lane's batch, other partitions) so that both commit in one transaction;
        rows stay in message order per table, as :meth:`sources_of` needs: ours, then ``other``'s."""
        for table, built in other.rows.items():
            if built:
                self.rows.setdefault(table, []).extend(built)
        for key, (ref, src) in other.markets.items():
            old = self.markets.get(key)
            if old is None or old[0].updated_ns <= ref.updated_ns:
                self.markets[key] = (ref, src)
        self.dead += other.dead
        self.offsets.update(other.offsets)
        self.event_msgs += other.event_msgs
        if self.runs is not None and other.runs:
            self.runs += other.runs
        if self.stamps is not None and other.stamps:
            self.stamps += other.stamps
        if other.size:
            self.started = min(self.started, other.started) if self.size else other.started
        self.size += other.size
        self.skipped += other.skipped

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def clear(self) -> None:
        self.rows.clear()
        self._sinks.clear()
        self.event_msgs.clear()
        if self.runs is not None:
            self.runs.clear()
        if self.stamps is not None:
            self.stamps.clear()
        self.markets.clear()
        self.dead.clear()
        self.offsets.clear()
        self.size = self.skipped = 0


_Sink = tuple[Callable[[bytes], None], Callable[..., bytes]]  # (append to the table's rows, row builder)


def build_rows(
    payloads: list[bytes],
    from_ms: int | None,
    to_ms: int | None,
    rows: dict[str, list[bytes]],
    sinks: dict[type, _Sink] | None = None,
    fast: FastBuild | None = None,
    stamps: bytearray | None = None,
) -> tuple[list[tuple[int, str]], int]:
    """Decode ``events`` values and append their COPY rows to ``rows`` (per table, in order); returns the
    undecodable or unencodable ones as (index, reason) and how many fell outside [from_ms, to_ms).
    ``sinks`` caches the per-type (append, builder) pairs between calls on the same ``rows``. With ``fast`` (the
    C builder, :mod:`sink.rowcodec`) runs of records go through C and each record it leaves goes through Python,
    one at a time, so the rows of every table stay in message order. ``stamps`` (when given) gets each row's origin
    time (:mod:`sink.latency`)."""
    if sinks is None:
        sinks = {}
    if fast is None or not (_int64(from_ms) and _int64(to_ms)):  # the C builder takes int64 bounds only
        return _build_python(payloads, 0, len(payloads), from_ms, to_ms, rows, sinks, stamps)
    dead: list[tuple[int, str]] = []
    skipped = 0
    n = len(payloads)
    i = 0
    while i < n:
        i, fast_skipped = fast(payloads, i, rows, SCHEMA_VERSION, from_ms, to_ms, stamps)
        skipped += fast_skipped
        if i < n:
            one_dead, one_skipped = _build_python(payloads, i, i + 1, from_ms, to_ms, rows, sinks, stamps)
            dead += one_dead
            skipped += one_skipped
            i += 1
    return dead, skipped


def _int64(bound: int | None) -> bool:
    return bound is None or (type(bound) is int and -(2**63) <= bound < 2**63)


def _build_python(
    payloads: list[bytes],
    start: int,
    stop: int,
    from_ms: int | None,
    to_ms: int | None,
    rows: dict[str, list[bytes]],
    sinks: dict[type, _Sink],
    stamps: bytearray | None = None,
) -> tuple[list[tuple[int, str]], int]:
    """:func:`build_rows` in Python for ``payloads[start:stop]`` (dead letters keep their index in ``payloads``)."""
    decode, version = _decode, SCHEMA_VERSION
    dead: list[tuple[int, str]] = []
    skipped = 0
    for i in range(start, stop):
        payload = payloads[i]
        try:
            rec = decode(payload)
            if rec.v != version:
                raise SchemaError(f"Event: schema version {rec.v} not supported (expected {version})")
            if (from_ms is not None and rec.ts_ms < from_ms) or (to_ms is not None and rec.ts_ms >= to_ms):
                skipped += 1
                continue
            if type(rec) is RecDelta and rec.alias:  # no row: an ordinal for the row of its key (sink.ordinals)
                table, row = build_row(rec)
                rows.setdefault(table, []).append(row)
                continue
            sink = sinks.get(type(rec))
            if sink is None:
                # build before the table's list exists: a row that cannot be encoded must not leave an empty
                # table behind (an empty COPY stream is a format error for PostgreSQL)
                table, build = BUILDERS[type(rec)]
                row = build(rec)
                sink = sinks[type(rec)] = (rows.setdefault(table, []).append, build)
                sink[0](row)
            else:
                append, build = sink
                append(build(rec))
            if stamps is not None and not (type(rec) is RecLifecycle and rec.alias):  # an alias is no row
                stamp(stamps, rec)
        except DECODE_ERRORS as exc:
            dead.append((i, f"undecodable event: Event: {exc}"))
        except (SchemaError, ValueError, OverflowError, struct.error) as exc:
            dead.append((i, f"undecodable event: {exc}"))
    return dead, skipped


def dead_letter(reason: str, src: Message) -> DeadLetter:
    """The dead-letter record for the message ``src``, rejected for ``reason``."""
    return DeadLetter(
        stage=STAGE,
        reason=reason,
        payload=src.value() or b"",
        source_topic=src.topic() or "",
        source_partition=src.partition() or 0,
        source_offset=src.offset() or 0,
        at_ns=time.time_ns(),
    )
