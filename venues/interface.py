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
  the default of ``gather.channels``), :meth:`Venue.discovery` (a sans-I/O listing walk whose result is the groups of
  markets to hold, each group on one connection; None = the gatherer's built-in listing of the default venue's REST
  API), :attr:`Venue.max_markets_per_connection` (the venue's own cap, 0 = none);
- dedup (both engines): :meth:`Venue.normaliser`, the winning ``RawFrame`` -> the shared :mod:`schemas.events`
  ``Event``;
- ``verify``: :meth:`Venue.truth_normaliser`, one emulator ground-truth message body -> ``Event``;
- emulator: :meth:`Venue.emulator_wire`, the module of wire formats the emulator speaks (channel names, envelope
  types, replies; the default venue's is also the format of the emulator's ground truth: its generator writes
  those message bodies); :meth:`Venue.emulator`, the venue's protocol profile the emulator's server hosts
  (:class:`EmulatorProfile`), or None for a venue the emulator cannot serve.

The event model and the sink's tables are shared by every venue and are not part of this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from schemas.events import Event
from schemas.raw import RawFrame

__all__ = ["Discovery", "EmulatorProfile", "FrameNormaliser", "Signer", "TruthNormaliser", "Venue", "VenueSession"]

FrameNormaliser = Callable[[RawFrame], Event]
# (kind, msg body, *, market, event_key, recv_ns, gatherer, envelope_type) -> Event
TruthNormaliser = Callable[..., Event]


class Signer(Protocol):
    """Authentication of one account: the headers of a request made now (or at ``ts_ms``)."""

    key_id: str

    def headers(self, ts_ms: int | None = None, method: str = "GET", path: str = ...) -> dict[str, str]: ...


class Discovery(Protocol):
    """One discovery pass of a venue, sans I/O: the gatherer GETs each :meth:`next_url` (paced, 429-aware) and gives
    the body to :meth:`feed` (``SchemaError`` on a malformed body) until :meth:`next_url` returns None; then
    :meth:`groups` are the markets to hold, each group (e.g. the tokens of one question) placed on one connection.
    A pass that fails part-way releases nothing."""

    def next_url(self) -> str | None: ...
    def feed(self, body: bytes) -> Any: ...
    def groups(self) -> list[list[str]]: ...


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


@dataclass(frozen=True)
class EmulatorProfile:
    """A venue's protocol as the emulator's server (``venue_sim.server.SimServer``) hosts it.

    ``session_factory(conn_id)`` returns one connection's server session (the duck type the server drives:
    ``receive_text``, ``deliver``, ``data_to_send``, the fault fields ``drop_next``, ``redeliver_next``, ``frozen``,
    ``overflowing`` with ``update_flags()``, ``end``, ``redelivered``) which writes the venue's record itself;
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

    # -- gatherer ------------------------------------------------------------------------------
    @abstractmethod
    def session(self, **kwargs: Any) -> VenueSession:
        """A new session for one connection. Keyword arguments (all stages pass them by name): ``gatherer``,
        ``conn_id``, ``channels``, ``sub_cap``, ``keyer``, ``emit(topic_key, frame)``, ``dead(data, reason)``,
        ``lifecycle`` (this connection carries the lifecycle channel), ``on_lifecycle(market, msg, recv_ns)``,
        ``log``, ``stats``, ``snapshot_hold_s``, ``anchor_hold_s``, ``lifecycle_covered``, ``lifecycle_seen``."""

    @abstractmethod
    def keyer(self, horizon_ms: int) -> Any:
        """The event-key state one gatherer's sessions share (identical bodies are numbered within it)."""

    @abstractmethod
    def session_stats(self) -> Any:
        """The plain integer counters one gatherer's sessions share and the gatherer exports."""

    def discovery(self, rest_url: str, page_limit: int) -> Discovery | None:
        """A new discovery pass against ``rest_url`` (pages of ``page_limit``); None (the default) = the gatherer's
        built-in listing (``ingest.registry``: statuses, lifecycle, look-ups by ticker)."""
        return None

    @abstractmethod
    def signer(self, key_id: str, pem: str = "", pem_path: str = "") -> Signer:
        """The account's signer from the PEM text or file (text wins); ``ValueError`` naming the empty setting."""

    # -- dedup, verify ---------------------------------------------------------------------------
    @abstractmethod
    def normaliser(self) -> FrameNormaliser:
        """``RawFrame -> Event`` for the winning copy; raises ``SchemaError`` (or ``ValueError``/``ArithmeticError``
        for a value that cannot be represented) and the caller dead-letters the frame."""

    @abstractmethod
    def truth_normaliser(self) -> TruthNormaliser:
        """``(kind, msg, *, market, event_key, recv_ns, gatherer, envelope_type) -> Event`` for one message body
        (the emulator's ground truth records bodies, not frames)."""

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
