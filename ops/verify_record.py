"""The venue's record (:mod:`venue_sim.record`) indexed for `mdpipe verify`: who was sent what (pure logic, no I/O).

``mdpipe verify`` judges the pipeline against what the venue says it did, never against the pipeline's own rows.
:class:`VenueRecord` reads the records once and answers, per venue event, the questions the rules of
:mod:`ops.verify` ask:

- *to which gatherers was it delivered?* A connection belongs to gatherer ``g`` when its ``ConnOpened.client``
  (the User-Agent) carries ``mdpipe-gather/<g>``; other clients are counted, never trusted as gatherers. A
  subscription covers a market of its channel on event ids ``after_id + 1 ..`` until an ``Unsubscribed`` of that
  market (or ``["*"]``, the whole sid) or the ``ConnClosed`` of its connection, whose ``after_id`` is the last id it
  covered. An event is delivered on such a span unless its id is in the ``Suppressed`` set of that sid.
- *when did a gatherer first subscribe the market's channel*, *was the market live at that event* (``MarketLive``
  in id order; before a market's first live record it is in the opposite state; a market without any record is
  taken as live from the start, so nothing is excused for it by mistake), *which snapshots did the venue send*,
  *which events were invalid on purpose* and *what were its books at the checkpoints*.

Speed: a demo has ~600K events and ~1M records. Per (channel, market) the spans are cut once into elementary id
ranges (a sweep over their ends), each with the gatherers active on it, so one event costs a binary search and, only
when a fault suppressed messages on one of the active sids, a set lookup per such sid.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sink.book import Book
from venue_sim.record import (
    ALL_MARKETS,
    BadMessage,
    BookCheckpoint,
    ConnClosed,
    ConnOpened,
    MarketLive,
    Record,
    SnapshotSent,
    Subscribed,
    Suppressed,
    Unsubscribed,
)

__all__ = [
    "CHANNEL_OF_KIND",
    "FirstSubscription",
    "NormalisedBook",
    "VenueRecord",
    "gatherer_of_client",
    "normalised_book",
]

# The venue channel that carries each kind of venue event (lifecycle is subscribed with markets ["*"]).
CHANNEL_OF_KIND: dict[str, str] = {
    "delta": "orderbook_delta",
    "trade": "trade",
    "ticker": "ticker",
    "lifecycle": "market_lifecycle_v2",
}
ORDERBOOK = CHANNEL_OF_KIND["delta"]

_AGENT = re.compile(r"(?:^|\s)mdpipe-gather/(\S+)")
_NOBODY: frozenset[str] = frozenset()
_OPEN_END = 1 << 62  # the hi of a span still open when the record ends

NormalisedBook = tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]


def gatherer_of_client(client: str) -> str | None:
    """The gatherer id a User-Agent names (``mdpipe-gather/<id>``, anywhere among its tokens), else None."""
    match = _AGENT.search(client)
    return match.group(1) if match else None


def normalised_book(yes: Iterable[tuple[str, str]], no: Iterable[tuple[str, str]]) -> NormalisedBook:
    """Wire levels (price, count strings) as sink.book compares them: sorted, normalised, no zero levels."""
    return Book.of(((Decimal(p), Decimal(c)) for p, c in yes), ((Decimal(p), Decimal(c)) for p, c in no)).normalised()


@dataclass(frozen=True, slots=True)
class FirstSubscription:
    """The first time any gatherer subscribed a market's channel: it covers events ``after_id + 1`` on."""

    after_id: int
    at_ns: int


@dataclass(slots=True)
class _Span:
    lo: int
    hi: int
    conn: int
    sid: int
    gatherer: str


# One elementary id range: (gatherers delivered on it whatever the id, [(gatherer, suppressed ids), ...] of the
# other active spans, whose gatherer gets the event only when its id is not suppressed).
_Entry = tuple[frozenset[str], tuple[tuple[str, frozenset[int]], ...]]


@dataclass(slots=True)
class _Segments:
    starts: list[int]  # entry i covers ids [starts[i], starts[i + 1])
    entries: list[_Entry]

    def at(self, event_id: int) -> frozenset[str]:
        i = bisect_right(self.starts, event_id) - 1
        if i < 0:
            return _NOBODY
        safe, risky = self.entries[i]
        if not risky:
            return safe
        extra = {g for g, ids in risky if event_id not in ids}
        return safe | extra if extra else safe


def _segments(spans: list[_Span], suppressed: dict[tuple[int, int], set[int]]) -> _Segments:
    points: list[tuple[int, int, int]] = []  # (id, +1 open / -1 close, span index)
    for i, s in enumerate(spans):
        if s.hi >= s.lo:
            points.append((s.lo, 1, i))
            points.append((s.hi + 1, -1, i))
    points.sort()
    active: set[int] = set()
    starts: list[int] = []
    entries: list[_Entry] = []
    k = 0
    while k < len(points):
        at = points[k][0]
        while k < len(points) and points[k][0] == at:
            _, op, i = points[k]
            if op > 0:
                active.add(i)
            else:
                active.discard(i)
            k += 1
        safe = frozenset(spans[i].gatherer for i in active if not suppressed.get((spans[i].conn, spans[i].sid)))
        risky = tuple(
            (spans[i].gatherer, frozenset(suppressed[(spans[i].conn, spans[i].sid)]))
            for i in sorted(active)
            if suppressed.get((spans[i].conn, spans[i].sid)) and spans[i].gatherer not in safe
        )
        starts.append(at)
        entries.append((safe, risky))
    return _Segments(starts, entries)


@dataclass
class VenueRecord:
    """The record, indexed. Build with :meth:`build`."""

    gatherers: tuple[str, ...] = ()
    first_gatherer_ns: int | None = None  # when the first gatherer connection was accepted
    connections: int = 0
    other_clients: Counter[str] = field(default_factory=Counter)  # connections that named no gatherer
    bad: dict[int, str] = field(default_factory=dict)  # event id -> why it is invalid on purpose
    snapshots_sent: dict[str, set[NormalisedBook]] = field(default_factory=dict)
    snapshots_sent_count: int = 0
    checkpoints: list[BookCheckpoint] = field(default_factory=list)
    first_live_ns: dict[str, int] = field(default_factory=dict)
    # the channel each kind of venue event travels on, as the record names channels (a venue profile has its own)
    channel_of_kind: dict[str, str] = field(default_factory=lambda: dict(CHANNEL_OF_KIND))
    _segments: dict[tuple[str, str], _Segments] = field(default_factory=dict)
    _first_sub: dict[tuple[str, str], FirstSubscription] = field(default_factory=dict)
    _live: dict[str, tuple[list[int], list[bool]]] = field(default_factory=dict)

    @classmethod
    def build(cls, records: Iterable[Record], channel_of_kind: dict[str, str] | None = None) -> VenueRecord:
        rec = cls()
        if channel_of_kind is not None:
            rec.channel_of_kind = dict(channel_of_kind)
        gatherer_of: dict[int, str] = {}
        spans: dict[tuple[str, str], list[_Span]] = {}
        open_spans: dict[tuple[int, int], dict[str, _Span]] = {}  # (conn, sid) -> market -> open span
        suppressed: dict[tuple[int, int], set[int]] = {}
        gatherers: set[str] = set()
        for r in records:
            if isinstance(r, Suppressed):
                suppressed.setdefault((r.conn, r.sid), set()).update(r.ids)
            elif isinstance(r, Subscribed):
                g = gatherer_of.get(r.conn)
                if g is None:
                    continue
                opened = open_spans.setdefault((r.conn, r.sid), {})
                for market in r.markets:
                    if market in opened:
                        continue
                    span = _Span(r.after_id + 1, _OPEN_END, r.conn, r.sid, g)
                    opened[market] = span
                    spans.setdefault((r.channel, market), []).append(span)
                    first = rec._first_sub.get((r.channel, market))
                    if first is None or r.after_id < first.after_id:
                        rec._first_sub[(r.channel, market)] = FirstSubscription(r.after_id, r.at_ns)
            elif isinstance(r, Unsubscribed):
                opened = open_spans.get((r.conn, r.sid))
                if opened:
                    for market in list(opened) if ALL_MARKETS in r.markets else r.markets:
                        span = opened.pop(market, None)
                        if span is not None:
                            span.hi = r.after_id
            elif isinstance(r, SnapshotSent):
                rec.snapshots_sent.setdefault(r.market, set()).add(normalised_book(r.yes, r.no))
                rec.snapshots_sent_count += 1
            elif isinstance(r, BookCheckpoint):
                rec.checkpoints.append(r)
            elif isinstance(r, ConnOpened):
                rec.connections += 1
                g = gatherer_of_client(r.client)
                if g is None:
                    rec.other_clients[r.client] += 1
                    continue
                gatherer_of[r.conn] = g
                gatherers.add(g)
                if rec.first_gatherer_ns is None or r.at_ns < rec.first_gatherer_ns:
                    rec.first_gatherer_ns = r.at_ns
            elif isinstance(r, ConnClosed):
                for key in [k for k in open_spans if k[0] == r.conn]:
                    for span in open_spans.pop(key).values():
                        span.hi = min(span.hi, r.after_id)
            elif isinstance(r, BadMessage):
                rec.bad[r.id] = r.reason
            elif isinstance(r, MarketLive):
                ids, states = rec._live.setdefault(r.market, ([], []))
                ids.append(r.after_id)
                states.append(r.live)
                if r.live and r.market not in rec.first_live_ns:
                    rec.first_live_ns[r.market] = r.at_ns
        rec.gatherers = tuple(sorted(gatherers))
        rec._segments = {key: _segments(s, suppressed) for key, s in spans.items()}
        for market, (ids, states) in rec._live.items():
            order = sorted(range(len(ids)), key=ids.__getitem__)  # stable: same after_id keeps record order
            rec._live[market] = ([ids[i] for i in order], [states[i] for i in order])
        return rec

    def delivered(self, channel: str, market: str, event_id: int) -> frozenset[str]:
        """The gatherers that event ``event_id`` of ``market`` on ``channel`` reached."""
        own = self._segments.get((channel, market))
        every = self._segments.get((channel, ALL_MARKETS))
        a = own.at(event_id) if own else _NOBODY
        b = every.at(event_id) if every else _NOBODY
        if not b:
            return a
        return a | b if a else b

    def first_subscription(self, channel: str, market: str) -> FirstSubscription | None:
        """The earliest gatherer subscription covering ``market`` on ``channel`` (by name or with ``["*"]``)."""
        own = self._first_sub.get((channel, market))
        every = self._first_sub.get((channel, ALL_MARKETS))
        if own is None or (every is not None and every.after_id < own.after_id):
            return every
        return own

    def live(self, market: str, event_id: int) -> bool:
        """Whether ``market`` was live when event ``event_id`` was generated."""
        found = self._live.get(market)
        if not found:
            return True
        ids, states = found
        i = bisect_right(ids, event_id - 1) - 1  # the last record with after_id < event_id
        return states[i] if i >= 0 else not states[0]
