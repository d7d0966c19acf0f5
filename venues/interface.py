"""What a stage needs from a venue: the interface every ``venues/<name>/`` package implements.

A venue package ``venues/<name>/__init__.py`` exposes ``VENUE``, an instance of a :class:`Venue` subclass whose
``name`` is the folder's name. Stages never import a venue package: they look the venue up by name
(:func:`venues.get_venue` with ``frame.venue`` or the config's ``venue.name``) and call the methods below. Methods
import the venue's modules when called, so looking a venue up stays cheap (dedup needs normalisation only, not the
gatherer's session). Stages that call a method on a hot path take the returned callable once and keep it.

What a venue provides, by stage:

- gatherer (``ingest``): :meth:`Venue.session` (the sans-I/O protocol of ONE connection: subscribe commands, the
  sequence/gap rules, event keys, one encoded ``RawFrame`` per market message through ``emit``; driven by
  ``ingest.connection`` as :class:`VenueSession` describes), :meth:`Venue.keyer` (the event-key state shared by a
  gatherer's sessions), :meth:`Venue.session_stats` (the plain counters the gatherer exports), :meth:`Venue.signer`
  (authentication headers for the WebSocket upgrade and REST), :attr:`Venue.channels` (its market-data channels,
  the default of ``gather.channels``), :meth:`Venue.discovery` (how the gatherer finds the markets to hold: either a
  :class:`Discovery`, a sans-I/O listing walk whose result is the groups of markets to hold, each group on one
  connection, or :class:`StatusListings`, listings by market status, look-ups by ticker and the lifecycle vocabulary
  over which the gatherer keeps its ``ingest.registry.MarketRegistry``), :attr:`Venue.max_markets_per_connection`
  (the venue's own cap, 0 = none);
- dedup (both engines): :meth:`Venue.normaliser`, the winning ``RawFrame`` -> the shared :mod:`schemas.events`
  ``Event``; optionally :meth:`Venue.event_encoder`, the same event already encoded, for the kinds it can vouch for
  (the native engine's hot path);
- ``verify``: :meth:`Venue.truth_normaliser`, one emulator ground-truth message body -> ``Event``;
  :meth:`Venue.truth_translator` (None for the venue whose protocol the emulator speaks natively), the emulator's
  truth and record rewritten into this venue's events and markets (:class:`TruthTranslator`); :attr:`Venue.trade_ids`
  (whether trades carry a venue trade id, else verify matches them by content); :meth:`Venue.book_rule` (the
  rebuild of a market's book from stored rows, None = the sink's additive rule);
- ``demo``: :attr:`Venue.needs_auth`, :attr:`Venue.silent_faults` (emulator faults the wire gives a client no means
  to detect or undo: a demo does not inject them), :attr:`Venue.demo_markets` and :attr:`Venue.demo_rate` (the
  demo's default scale for this venue's emulator);
- emulator: :meth:`Venue.emulator_wire`, the module of wire formats the emulator speaks (channel names, envelope
  types, replies; the default venue's is also the format of the emulator's ground truth: its generator writes
  those message bodies); :meth:`Venue.emulator`, the venue's protocol profile the emulator's server hosts
  (:class:`EmulatorProfile`), or None for a venue the emulator cannot serve;
- tests and benchmarks: :meth:`Venue.synth`, the module of the venue's synthetic data (:mod:`venues.synthetic`).

The event model and the sink's tables are shared by every venue and are not part of this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, Protocol

from schemas.events import Event
from schemas.markets import MarketRef
from schemas.raw import RawFrame

__all__ = [
    "DISCOVERY_KINDS",
    "BookRule",
    "Discovery",
    "EmulatorProfile",
    "EventEncoder",
    "FrameNormaliser",
    "Signer",
    "StatusListings",
    "TruthNormaliser",
    "TruthTranslator",
    "Venue",
    "VenueSession",
    "discovery_kind",
    "protocol_members",
]

FrameNormaliser = Callable[[RawFrame], Event]
# (winning frame, raw_ts_ms, dedup_ns) -> encode_event of the normaliser's event with those hop stamps, or None
EventEncoder = Callable[[RawFrame, int, int], bytes | None]
# (kind, msg body, *, market, event_key, recv_ns, gatherer, envelope_type) -> Event
TruthNormaliser = Callable[..., Event]
# (snapshot rows, delta rows, at_ms) -> the book at venue time at_ms (None: no snapshot at or before it); the types are
# sink.book's SnapshotRow, DeltaRow and Book
BookRule = Callable[[Any, Any, int], Any]


class Signer(Protocol):
    """Authentication of one account: the headers of a request made now (or at ``ts_ms``)."""

    key_id: str

    def headers(self, ts_ms: int | None = None, method: str = "GET", path: str = ...) -> dict[str, str]: ...


class Discovery(Protocol):
    """One discovery pass of a venue, sans I/O: the gatherer GETs each :meth:`next_url` (paced, 429-aware) and gives
    the body to :meth:`feed` (``SchemaError`` on a malformed body) until :meth:`next_url` returns None; then
    :meth:`groups` are the markets to hold, each group (e.g. the tokens of one question) placed on one connection,
    and :meth:`refs` the reference data of every listed market (``schemas.markets.MarketRef`` stamped
    ``updated_ns``), which the gatherer publishes to the ``markets`` topic when it changed
    (:class:`ingest.listing_refs.ListingRefs`). A pass that fails part-way releases and publishes nothing."""

    kind: Literal["walk"]  # the tag the gatherer goes by (:func:`discovery_kind`)

    def next_url(self) -> str | None: ...
    def feed(self, body: bytes) -> Any: ...
    def groups(self) -> list[list[str]]: ...
    def refs(self, updated_ns: int) -> list[Any]: ...


class StatusListings(Protocol):
    """A venue's REST listings filtered by market status and look-ups by ticker, and the vocabulary of its statuses
    and lifecycle messages; sans I/O. The gatherer drives it (``ingest.gatherer``) and decides with
    ``ingest.registry.MarketRegistry``: each pass GETs every page of :meth:`listing_url` for each status of
    :meth:`statuses` (paced, 429-aware; resumed from the failing page's cursor), gives each body to
    :meth:`page`, then looks held markets no listing showed up by ticker (:meth:`lookup_url`, :attr:`lookup_batch`
    a request); lifecycle messages (the session's ``on_lifecycle``) are read with :meth:`lifecycle_of`. A listed
    market is any object with ``ticker`` and ``status`` attributes that :meth:`market_ref` accepts."""

    kind: Literal["status_listings"]  # the tag the gatherer goes by (:func:`discovery_kind`)
    lookup_batch: int  # tickers per look-up request: no more than one page of the answer holds
    listing_statuses: tuple[str, ...]  # the statuses a pass lists when ``gather.discovery_statuses`` is empty

    def statuses(self, requested: list[str]) -> list[str]:
        """The statuses a pass lists: ``requested`` (``gather.discovery_statuses``), or :attr:`listing_statuses`
        when it is empty; ValueError (one line naming the accepted ones) for a list the venue cannot hold by."""
        ...

    def listing_url(self, status: str, cursor: str = "") -> str:
        """The URL of the page of markets in ``status`` at ``cursor`` ("" = the first page)."""
        ...

    def lookup_url(self, tickers: list[str]) -> str:
        """The URL that looks ``tickers`` up whatever their status."""
        ...

    def page(self, body: bytes) -> tuple[list[Any], str]:
        """The listed markets of one response body and the next page's cursor ("" = last); ``SchemaError``."""
        ...

    def lifecycle_of(self, msg: Any) -> tuple[str, str]:
        """(market, event type) of a lifecycle message the session passed to ``on_lifecycle`` (market "" = none)."""
        ...

    def lifecycle_status(self, event_type: str) -> str | None:
        """The status a lifecycle type implies (None: it changes nothing about holding)."""
        ...

    def classify(self, event_type: str) -> str:
        """``hold`` | ``release`` | ``neutral`` | ``unknown`` (unknown ones are counted and logged once)."""
        ...

    def holds(self, status: str) -> bool:
        """Is a market in ``status`` held? (True for a status the venue does not know.)"""
        ...

    def known_status(self, status: str) -> bool:
        """Is ``status`` one of the venue's (others are logged once)?"""
        ...

    def market_ref(self, market: Any, updated_ns: int, status: str) -> MarketRef:
        """The reference data published for a listed ``market`` whose status is taken to be ``status``."""
        ...


DISCOVERY_KINDS: dict[str, type] = {"walk": Discovery, "status_listings": StatusListings}


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a :class:`typing.Protocol` asks for (its own, not ``object``'s)."""
    own = [name for name in vars(protocol) if not name.startswith("_")]
    return sorted({*getattr(protocol, "__annotations__", {}), *own})


def discovery_kind(found: object) -> Literal["walk", "status_listings"] | None:
    """Which kind of discovery ``found`` (what :meth:`Venue.discovery` returned) is, by its explicit ``kind`` tag:
    None for None. TypeError (one line) when the tag is missing or unknown, or a member of its kind is missing, so a
    half-built discovery object fails at start-up instead of passing for the other kind."""
    if found is None:
        return None
    kind = getattr(found, "kind", None)
    protocol = DISCOVERY_KINDS.get(kind) if isinstance(kind, str) else None
    if protocol is None:
        raise TypeError(
            f"{type(found).__name__}: discovery kind {kind!r}, expected one of {', '.join(DISCOVERY_KINDS)}"
        )
    missing = [name for name in protocol_members(protocol) if not hasattr(found, name)]
    if missing:
        raise TypeError(f"{type(found).__name__}: a {kind} discovery without {', '.join(missing)}")
    return kind  # type: ignore[return-value]


class VenueSession(Protocol):
    """The sans-I/O protocol state of one gatherer connection, as the I/O layer and the gatherer drive it.

    After each (re)connect the I/O layer calls :meth:`connected`, feeds every received message to :meth:`receive`
    (bytes + receive time), sends what :meth:`data_to_send` returns (``outbox`` is that same list, read directly
    on the fastest path) and calls :meth:`disconnected` when the socket drops; the gatherer calls :meth:`tick` a
    few times a second, :meth:`probe` when the connection is silent, :meth:`flush` at shutdown, and
    :meth:`add_markets`/:meth:`remove_markets` as discovery decides. A session may set ``needs_reconnect`` (e.g. a
    heartbeat went unanswered): the gatherer's watchdog then closes the connection, which reconnects.
    """

    conn_id: int
    markets: dict[str, None]
    outbox: list[bytes]
    is_connected: bool

    def connected(self, now_ns: int = 0) -> None: ...
    def disconnected(self, now_ns: int = 0) -> None: ...
    def receive(self, data: bytes, recv_ns: int) -> None: ...
    def data_to_send(self) -> list[bytes]: ...
    def has_output(self) -> bool: ...
    def tick(self, now_ns: int) -> None: ...
    def probe(self, now_ns: int) -> bool: ...
    def flush(self, now_ns: int) -> None: ...
    def add_markets(self, tickers: list[str]) -> None: ...
    def remove_markets(self, tickers: list[str]) -> None: ...


class TruthTranslator(Protocol):
    """The emulator's ground truth in a venue's own terms, for ``mdpipe verify`` (one per verified run).

    The emulator generates venue-neutral events (:mod:`venue_sim.truth`) and writes a record (:mod:`venue_sim.record`)
    whose market-level facts (``MarketLive``, ``BookCheckpoint``) name its own market tickers, while a venue profile
    (:meth:`Venue.emulator`) sends each event as this venue's messages on this venue's markets and records the
    connections' subscriptions in those markets. The translator replays the same translation the profile did (from
    the run's ``seed``), so what is expected still comes from the venue, never from the pipeline's rows.

    Call :meth:`record` first (it yields the record rewritten into this venue's markets and notes the subscriptions),
    then :meth:`truth`: per emulator event, the ``(kind, market, Event or the exception its body raised)`` of every
    message it became; ``sent(market, book)`` is told every book (``sink.book.Book``) the venue sent to a client
    (snapshots are matched by content against them). ``channel_of_kind`` names the channel each kind travels on, as
    the venue's record names it."""

    channel_of_kind: dict[str, str]

    def record(self, records: Any) -> Any: ...
    def truth(self, events: Any, sent: Callable[[str, Any], None]) -> Any: ...


@dataclass(frozen=True)
class EmulatorProfile:
    """A venue's protocol as the emulator's server (``venue_sim.server.SimServer``) hosts it.

    ``session_factory(conn_id)`` returns one connection's server session (the duck type the server drives:
    ``receive_text``, ``deliver``, ``data_to_send``, the fault fields ``drop_next``, ``redeliver_next``, ``frozen``,
    ``overflowing`` with ``update_flags()``, ``end``, ``redelivered``) which writes the venue's record itself (a session
    with ``hold_reply_records()`` and ``take_reply_records()`` hands the records of its replies to the server instead,
    written when the replies reach the socket);
    ``ws_path`` is the WebSocket path it is served on; ``rest_routes`` maps a REST path to ``query -> JSON body``
    (served under the emulator's rate limit) and ``rest_base`` is the path a client's REST base URL ends with
    ("" = the server's root); ``rest_handler(path, query, venue)`` answers the other paths under ``rest_base``
    with ``(status, JSON body as bytes or a JSON-able object)`` or None (no such route), a ``ValueError`` being a
    400; ``venue`` offers ``venue_ms()`` (the venue clock) and ``fail_page(detail)`` (True when the ``failpage``
    fault fails this listing page). ``auth_headers`` are the (key id, timestamp, signature) headers of a signed
    WebSocket upgrade (an RSA-PSS signature of timestamp + ``GET`` + ``ws_path``), checked when the emulator runs
    with auth; the key id header also names a REST client for the rate limit; () = the venue signs nothing.
    ``observe(events)`` sees every batch the emulator generates, before any connection does, whether or not one is
    open (a profile that mirrors the venue's books must not miss a batch).
    """

    ws_path: str
    session_factory: Callable[[int], Any]
    rest_routes: dict[str, Callable[[dict[str, str]], bytes]] = field(default_factory=dict)
    observe: Callable[[list[Any]], Any] | None = None
    rest_base: str = ""
    rest_handler: Callable[[str, dict[str, str], Any], tuple[int, Any] | None] | None = None
    auth_headers: tuple[str, ...] = ()


class Venue(ABC):
    """One venue as the stages see it (see module docstring). Subclasses set ``name`` and ``channels``."""

    name: str = ""
    channels: tuple[str, ...] = ()  # market-data channels a gatherer subscribes by default
    lifecycle_channel: str = ""  # the unfiltered channel that announces markets ("" = none)
    # The venue a config without ``venue.name`` means: exactly one venue package says so.
    default: bool = False
    max_markets_per_connection: int = 0  # the venue's cap on one connection's markets (0: none of its own)
    trade_ids: bool = True  # trades carry the venue's own trade id (verify: identity = the id; else their content)
    needs_auth: bool = True  # the market-data WebSocket needs the account's signature (the demo runs the sim so)
    silent_faults: frozenset[str] = frozenset()  # emulator faults no client of this venue can detect or undo
    demo_markets: int = 20_000  # `mdpipe demo`'s default scale of this venue's emulator: markets listed ...
    demo_rate: float = 5_000.0  # ... and venue events per second

    # -- gatherer ------------------------------------------------------------------------------
    @abstractmethod
    def session(self, **kwargs: Any) -> VenueSession:
        """A new session for one connection. Keyword arguments (all stages pass them by name): ``gatherer``,
        ``conn_id``, ``channels``, ``sub_cap``, ``keyer``, ``emit(topic_key, frame)``, ``dead(data, reason)``,
        ``lifecycle`` (this connection carries the lifecycle channel), ``on_lifecycle(market, msg, recv_ns)``,
        ``log``, ``stats``, ``snapshot_hold_s``, ``anchor_hold_s``, ``anchor_max_wait_ms``, ``lifecycle_peers``,
        ``lifecycle_seen``."""

    @abstractmethod
    def keyer(self, horizon_ms: int) -> Any:
        """The event-key state one gatherer's sessions share (identical bodies are numbered within it)."""

    @abstractmethod
    def session_stats(self) -> Any:
        """The plain integer counters one gatherer's sessions share and the gatherer exports."""

    def discovery(self, rest_url: str, page_limit: int) -> Discovery | StatusListings | None:
        """How the gatherer finds markets at ``rest_url`` (pages of ``page_limit``): a new :class:`Discovery` pass
        (called once per pass), or the venue's :class:`StatusListings` (called once per gatherer and REST URL);
        None (the default) = no discovery: the gatherer holds the markets it is given."""
        return None

    @abstractmethod
    def signer(self, key_id: str, pem: str = "", pem_path: str = "") -> Signer:
        """The account's signer from the PEM text or file (text wins); ``ValueError`` naming the empty setting."""

    # -- dedup, verify ---------------------------------------------------------------------------
    @abstractmethod
    def normaliser(self) -> FrameNormaliser:
        """``RawFrame -> Event`` for the winning copy; raises ``SchemaError`` (or ``ValueError``/``ArithmeticError``
        for a value that cannot be represented) and the caller dead-letters the frame."""

    def event_encoder(self) -> EventEncoder | None:
        """Optional fast path of :meth:`normaliser` (dedup's native engine): ``(frame, raw_ts_ms, dedup_ns) ->`` the
        bytes ``encode_event`` gives for the normaliser's event with those hop stamps set, or None for a frame it cannot
        vouch for (the caller then takes the normaliser, which raises the errors); it never raises. None (the default):
        no fast path."""
        return None

    @abstractmethod
    def truth_normaliser(self) -> TruthNormaliser:
        """``(kind, msg, *, market, event_key, recv_ns, gatherer, envelope_type) -> Event`` for one message body
        (the emulator's ground truth records bodies, not frames)."""

    def truth_translator(self, seed: int) -> TruthTranslator | None:
        """The emulator's truth and record in this venue's terms (``seed``: the run's); None (the default) = the venue
        whose protocol the emulator speaks natively: truth bodies go through :meth:`truth_normaliser` one for one."""
        return None

    def book_rule(self) -> BookRule | None:
        """How a market's book is rebuilt from its stored snapshot and delta rows when the rows alone do not say it;
        None (the default) = the sink's rule (``sink.book``: a delta adds to its level; the database's ``book_at``)."""
        return None

    # -- emulator --------------------------------------------------------------------------------
    @abstractmethod
    def emulator_wire(self) -> ModuleType:
        """The module of wire formats the emulator speaks for this venue (channel names, envelope types, replies)."""

    def emulator(
        self, *, seed: int, markets: Any, books: Any = None, sub_cap: int = 0, recorder: Any = None
    ) -> EmulatorProfile | None:
        """The venue's protocol profile for the emulator over its market table ``markets`` and the generator's
        ``books`` (``seed``: the run's seed, ``sub_cap``: a connection's subscription cap, 0 = the venue's own;
        ``recorder``: where sessions write the venue record, None = no record); None (the default) = the emulator
        cannot serve this venue."""
        return None

    # -- packaging -------------------------------------------------------------------------------
    def accelerators(self) -> dict[str, bool]:
        """The venue's optional C extensions (module name -> whether this install compiled and loaded it); setup.py
        builds every ``venues/<name>/_*.c``, and an image's build checks each is True (``ops.accelerators``)."""
        return {}

    # -- tests and benchmarks --------------------------------------------------------------------
    def synth(self) -> ModuleType:
        """The module of the venue's synthetic data (shape: :mod:`venues.synthetic`) that the stages' tests and
        benchmarks draw frames from; ``NotImplementedError`` (the default) for a venue without one."""
        raise NotImplementedError(f"venue {self.name!r} has no synthetic data (Venue.synth)")
