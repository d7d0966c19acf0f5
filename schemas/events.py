"""Normalised events (topic ``events``, written by dedup, loaded by the sink): one per venue event.

Prices are exact fixed-point dollars and sizes exact fractional counts (``Decimal``, encoded as
strings); times are integers (ms for venue times, ns for receive times). Every event carries its
``event_key``, the venue timestamp, the winning gatherer and when the first copy was received.

Hop stamps (the last two fields of every type, 0 when absent: older records, or a producer that does not stamp):
``raw_ts_ms`` is the Kafka timestamp of the winning copy's raw record (the broker's append time on topics mdpipe
creates: ``message.timestamp.type=LogAppendTime``, see :mod:`mdpipe.topics`), ``dedup_ns`` the wall-clock time the
dedup worker read that record. With ``recv_ns`` and the ``events`` record's own append time they split the trip
into hops (:mod:`ops.hops`). They are last so that a reader of the older layout still decodes (msgspec ignores
trailing array items) and an older record decodes here (defaults). Fields added since then come after them, for the
same reason (:class:`BookDelta`'s book rule).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from schemas.codec import Versioned, make_codec

__all__ = [
    "EVENT_TYPES",
    "BookDelta",
    "BookSnapshot",
    "Event",
    "Gap",
    "Level",
    "Lifecycle",
    "Ticker",
    "Trade",
    "decode_event",
    "encode_event",
]

Side = Literal["yes", "no"]
Level = tuple[Decimal, Decimal]  # (price_dollars, count)


class _EventBase(Versioned, kw_only=True, tag_field="type"):
    venue: str
    market: str
    event_key: str
    ts_ms: int  # venue timestamp; for snapshots (which carry none) the first copy's receive time
    recv_ns: int  # gatherer receive time of the first (winning) copy
    gatherer: str  # id of the gatherer whose copy won


class BookSnapshot(_EventBase, kw_only=True, tag="snapshot"):
    """A book the venue sent (not a venue event). ``ts_ms`` is its position in the market's delta stream: it
    contains every delta with venue time < ts_ms, and those at ts_ms whose event key is not in ``after_keys``
    (:mod:`sink.book` rebuilds books from this rule)."""

    market_id: str = ""
    yes: list[Level] = []
    no: list[Level] = []
    after_keys: list[str] = []
    raw_ts_ms: int = 0  # hop stamps: keep last (see the module docstring)
    dedup_ns: int = 0


class BookDelta(_EventBase, kw_only=True, tag="delta"):
    """A change of one level of one ladder. The book rule travels with the row (:mod:`sink.book` rebuilds with it):
    ``replaces`` False (the default): ``delta`` is ADDED to the level's size, and deltas commute; True (a venue whose
    messages carry a level's new size): ``delta`` IS the level's new size, so order matters: deltas sharing a
    ``ts_ms`` apply in ascending ``ordinal`` (the venue's order, set by its normaliser; ties: event key).
    ``alias``: not an event but an ALIAS record: a later copy of a delta already emitted carried a higher
    ``ordinal``, and the sink raises that delta's row to it (keeps the greatest) instead of storing a row
    (:mod:`dedup_stream.logic`, ordinals)."""

    market_id: str = ""
    side: Side
    price: Decimal
    delta: Decimal
    raw_ts_ms: int = 0  # hop stamps (see the module docstring)
    dedup_ns: int = 0
    replaces: bool = False  # after the hop stamps: added later (see the module docstring)
    ordinal: int = 0
    alias: bool = False


class Trade(_EventBase, kw_only=True, tag="trade"):
    trade_id: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_side: str = ""
    taker_book_side: str = ""
    is_block_trade: bool = False
    raw_ts_ms: int = 0  # hop stamps: keep last (see the module docstring)
    dedup_ns: int = 0


class Ticker(_EventBase, kw_only=True, tag="ticker"):
    market_id: str = ""
    price: Decimal | None = None
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    yes_bid_size: Decimal | None = None
    yes_ask_size: Decimal | None = None
    last_trade_size: Decimal | None = None
    volume: Decimal | None = None
    open_interest: Decimal | None = None
    dollar_volume: int | None = None
    dollar_open_interest: int | None = None
    raw_ts_ms: int = 0  # hop stamps: keep last (see the module docstring)
    dedup_ns: int = 0


class Lifecycle(_EventBase, kw_only=True, tag="lifecycle"):
    event_type: str
    open_ts: int | None = None
    close_ts: int | None = None
    determination_ts: int | None = None
    settled_ts: int | None = None
    result: str | None = None
    settlement_value: Decimal | None = None
    is_deactivated: bool | None = None
    details: str = ""  # remaining fields of the venue message as compact JSON
    raw_ts_ms: int = 0  # hop stamps: keep last (see the module docstring)
    dedup_ns: int = 0
    # Identity of an event whose copies carry several keys (after the hop stamps: added later). ``keys``: every key
    # the event is known by so far (the winning copy's ``event_key`` and ``alt_keys``; empty = ``event_key`` alone).
    # ``alias``: not an event but an ALIAS record: a later copy of an event already emitted brought the keys in
    # ``keys`` (at least one of them is a key the event had), and the sink adds them to that event's row instead of
    # storing a row (:mod:`dedup_stream.logic`, lifecycle identity). A replay whose first copy is another copy than
    # the live run's thus still finds the row the live run stored, by any of its keys.
    keys: list[str] = []
    alias: bool = False


class Gap(_EventBase, kw_only=True, tag="gap"):
    """A gatherer's report of a window in which it may have missed venue messages (``schemas.raw.GapReport``).

    Not a venue event: a coverage record (``market`` is the first market it covers, ``"*"`` for all; ``ts_ms`` the
    window's start). ``mdpipe verify`` calls a lost event *reported* when every gatherer had such a window open.
    """

    conn: int
    kind: str
    channel: str = ""
    markets: list[str] = []
    from_ns: int
    to_ns: int
    sid: int | None = None
    missed: int | None = None  # messages the seq says were skipped, when known
    raw_ts_ms: int = 0  # hop stamps: keep last (see the module docstring)
    dedup_ns: int = 0


Event = BookSnapshot | BookDelta | Trade | Ticker | Lifecycle | Gap
EVENT_TYPES: tuple[type, ...] = (BookSnapshot, BookDelta, Trade, Ticker, Lifecycle, Gap)

encode_event, decode_event = make_codec(Event, "Event")
