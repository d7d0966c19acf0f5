"""The venue's own record of what it did for each connection: the half of the ground truth that is not events.

``mdpipe verify`` must not decide what was *expected* from the pipeline's own rows. The emulator therefore records,
next to its events (:mod:`venue_sim.truth`), every fact about delivery that a real venue knows and a client cannot
see: which client opened which connection, which markets each subscription covered from which event on, which
messages a fault kept from a connection, which books it sent as snapshots, which messages were invalid on purpose,
when markets became live, and its own books at checkpoints.

Positions are event ids (:class:`venue_sim.truth.TruthEvent` ``id``), never clocks: ``after_id`` is the last event
generated before the fact, so a subscription recorded with ``after_id = N`` covers the events ``N + 1`` onwards and an
unsubscription with ``after_id = M`` ends that coverage after event ``M``. The venue generates events in batches and
hands each batch to every open connection in the same step (no await in between) before it reads another command,
so these positions are exact.

Exact semantics (what the emulator writes; verify relies on them):

- ``ConnOpened``: at accept; ``after_id`` = last event generated then. ``client`` = the upgrade's User-Agent ("").
- ``Subscribed``: one per sid and change. ``subscribe`` writes one per channel (sid); ``markets`` are the tickers
  the sid delivers (unknown tickers are skipped, as on the wire); ``["*"]`` for an unfiltered ticker/trade
  subscription and always for ``market_lifecycle_v2`` (which cannot be filtered; its sid also carries the
  event-level ``event_lifecycle``/``event_fee_update`` messages). ``update_subscription add_markets`` writes one
  with only the markets actually added. ``after_id`` = last event generated when the command was handled.
- ``Unsubscribed``: ``unsubscribe`` (``["*"]``, reason ``unsubscribe``), ``delete_markets`` (the markets actually
  removed, reason ``delete_markets``), the error-25 kill (``["*"]``, reason ``overflow``, ``after_id`` = the
  event before the first one the dead sid did not get) and the end of the connection (every sid still open,
  ``["*"]``, reason ``closed``, same ``after_id`` as ``ConnClosed``).
- ``Suppressed``: ids of events a fault kept from a sid while it covered them (``drop``: seq-carrying messages
  only; ``freeze``: every data message, tickers included). Their seq was consumed (the client sees a gap).
  Messages held by the ``delay`` fault are delivered late, not suppressed; a re-delivered seq (``redeliver``
  fault) is the same event sent twice and is not recorded here.
- ``SnapshotSent``: every ``orderbook_snapshot`` (after subscribe, add_markets, get_snapshot): the book after
  ``after_id`` exactly as the levels were spelled on the wire (``use_yes_price`` says how NO bids were priced).
  A command read once the venue has decided to close its connection is not handled, so it records nothing; a
  snapshot is recorded when it reaches the socket, so one that the ``delay`` fault still holds when the close comes
  (dropped with the held batches) is not recorded either.
- ``ConnClosed``: any end (fault ``close``, heartbeat-timeout abort, client close, lost socket, server stop).
  ``after_id`` = the last event of the last batch written to the socket while it was open and the venue had not
  decided to close it (batches held by the ``delay`` fault count when released; those still held at a ``close``
  fault are dropped). After an abort (``reason`` ``heartbeat_timeout``) bytes still in the
  socket buffer may never arrive: the client sees the connection drop. A connection that ends while the ``delay``
  fault still holds batches can have a sid whose ``Subscribed.after_id`` is above its final ``after_id``: that
  sid delivered nothing. ``reason``: ``fault``, ``heartbeat_timeout``, ``client`` (the client sent the close),
  ``server`` (the venue stopped), ``lost`` (the socket went away without a close frame).
- ``BookCheckpoint``: every ``checkpoint_s`` of venue time and once when generation stops, one per market that
  had at least one delta: its book holding every delta with ``ts_ms <= T`` and none later (taken inside the
  generator before the first event with ``ts_ms > T``), NO bids at NO-leg prices (as without ``use_yes_price``).
  Books start from the venue's initial book (an untouched market's snapshot) and move only by deltas.
- ``BadMessage``: event ``id`` was sent invalid on purpose (an ``orderbook_delta`` with an out-of-range number):
  it took a seq on every sid covering it, is in the truth file, and did NOT change the venue's book.
- ``MarketLive``: ``after_id`` = the id of the lifecycle event that made the change (0 = listed at start);
  ``event`` names it: ``listed``/``created``/``activated`` (live) or ``deactivated``/``determined``/``settled``
  (not live). A created market is live from ``created`` on, but has no data before its ``activated``.

On disk: the framing of :mod:`venue_sim.truth` (a msgpack stream of ``bin32`` chunks, each one msgpack array of
records) with tagged array-like records, written by :class:`RecordWriter` and read back by :func:`read_record`.
The file lives next to the truth file (:func:`record_path`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from venue_sim.chunks import ChunkWriter, read_chunks

__all__ = [
    "ALL_MARKETS",
    "BadMessage",
    "BookCheckpoint",
    "ConnClosed",
    "ConnOpened",
    "MarketLive",
    "Record",
    "RecordWriter",
    "SnapshotSent",
    "Subscribed",
    "Suppressed",
    "Unsubscribed",
    "read_record",
    "record_path",
]

ALL_MARKETS = "*"  # ``markets`` of an unfiltered subscription (lifecycle; ticker/trade without a market list)

Level = tuple[str, str]  # (price, count) as the wire spells them


class _Rec(msgspec.Struct, array_like=True, tag_field="t", frozen=True):
    pass


class ConnOpened(_Rec, tag="conn"):
    """A WebSocket was accepted. ``client`` is the upgrade request's User-Agent (gatherers name themselves)."""

    conn: int
    client: str
    at_ns: int
    after_id: int


class ConnClosed(_Rec, tag="closed"):
    """The connection ended (by either side); nothing after ``after_id`` reached it."""

    conn: int
    at_ns: int
    after_id: int
    reason: str = ""


class Subscribed(_Rec, tag="sub"):
    """``markets`` of ``channel`` are delivered on ``sid`` of ``conn`` from event ``after_id + 1`` on."""

    conn: int
    sid: int
    channel: str
    markets: list[str]
    after_id: int
    at_ns: int


class Unsubscribed(_Rec, tag="unsub"):
    """``markets`` (``["*"]``: all markets of the sid, i.e. the sid ended) stop being delivered after ``after_id``."""

    conn: int
    sid: int
    channel: str
    markets: list[str]
    after_id: int
    at_ns: int
    reason: str = ""  # "unsubscribe" | "delete_markets" | "overflow" | "closed"


class Suppressed(_Rec, tag="suppressed"):
    """Events a fault kept from ``sid`` of ``conn`` although it was subscribed (their seq was still consumed)."""

    conn: int
    sid: int
    ids: list[int]
    reason: str  # "drop" | "freeze"


class SnapshotSent(_Rec, tag="snap"):
    """An ``orderbook_snapshot`` of ``market`` sent on ``sid`` of ``conn``: the book after event ``after_id``.
    ``no`` holds NO-leg prices unless the sid asked for ``use_yes_price`` (then YES prices, as sent)."""

    conn: int
    sid: int
    market: str
    after_id: int
    yes: list[Level]
    no: list[Level]
    use_yes_price: bool = False


class BookCheckpoint(_Rec, tag="book"):
    """The venue's book of ``market`` holding every delta with venue time <= ``ts_ms`` (and none later)."""

    ts_ms: int
    after_id: int
    market: str
    yes: list[Level]
    no: list[Level]


class BadMessage(_Rec, tag="bad"):
    """Event ``id`` was sent with content that is invalid on purpose (e.g. an out-of-range number): a correct
    pipeline dead-letters it and never stores it."""

    id: int
    reason: str


class MarketLive(_Rec, tag="live"):
    """``market`` became tradeable (listed at start, created or re-activated) after event ``after_id``; ``live`` is
    False when it stopped (deactivated, determined, settled)."""

    market: str
    after_id: int
    at_ns: int
    live: bool = True
    event: str = ""  # listed | created | activated | deactivated | determined | settled


Record = (
    ConnOpened
    | ConnClosed
    | Subscribed
    | Unsubscribed
    | Suppressed
    | SnapshotSent
    | BookCheckpoint
    | BadMessage
    | MarketLive
)


def record_path(truth_path: str | os.PathLike[str]) -> Path:
    """Where the record of a truth file lives (``truth.msgpack`` -> ``truth.record.msgpack``)."""
    p = Path(truth_path)
    return p.with_name(f"{p.stem}.record{p.suffix or '.msgpack'}")


class RecordWriter(ChunkWriter[Record]):
    """Buffered append-only writer of :class:`Record` (see :class:`venue_sim.chunks.ChunkWriter`)."""


def read_record(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Every record of a record file in the order written (a truncated last chunk is ignored)."""
    return read_chunks(path, Record)
