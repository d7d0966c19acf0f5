"""Client side of Polymarket's ``market`` channel for ONE connection, sans I/O (no asyncio, no socket, no clock).

A :class:`venues.interface.VenueSession`: the I/O layer calls :meth:`connected` after each
(re)connect and :meth:`disconnected` when the socket ends, feeds every received text frame to :meth:`receive` with its
receive time, calls :meth:`tick` a few times a second, and sends every item of :attr:`outbox` as a TEXT frame (the
heartbeat ``PING`` included). When :attr:`needs_reconnect` turns true (no ``PONG`` within ``pong_timeout_s``) it
closes the socket and reconnects. The session:

- subscribes its assets (token ids; at most ``max_assets``, :data:`venues.polymarket.wire.MAX_ASSETS_PER_CONNECTION`):
  the first frame ``{"type":"market","assets_ids":[..]}`` with up to ``ids_per_frame`` ids, the rest in
  ``{"operation":"subscribe"}`` frames of the same size; on every reconnect all of them again (the venue keeps no
  subscription across connections and answers each subscribed asset with a fresh ``book``); assets added later go in
  ``subscribe`` frames, removed ones in ``unsubscribe`` frames. There is no ack: an asset counts as covered from its
  first ``book`` on;
- sends ``PING`` every ``ping_interval_s`` and skips ``PONG`` (not JSON);
- splits every frame (an object or an array of messages) and a ``price_change`` into its entries, keys each
  (:mod:`venues.polymarket.keys`) and emits one encoded RawFrame per token message (``sid``/``seq`` None; a
  ``price_change`` entry's order among its level's changes in the millisecond in ``ordinal``);
  entries for assets this connection did not subscribe are dropped and counted (``foreign``): they are another
  connection's to record, and counting them here would move this connection's occurrence numbers;
- places every ``book`` in its token's change stream: it is held until a message OF THE SAME TOKEN from a later
  venue millisecond arrives (or ``book_hold_s`` passes; the order of different tokens' messages on one socket is not
  documented, so another token's clock proves nothing) and carries ``venue_ms`` = its timestamp and ``after_keys`` =
  the keys of the token's messages of that millisecond that arrived after it;
- detects what can be detected without sequence numbers (the venue gives none):
  * ``down``: from the last message before a connection ended to the first message after the reconnect, every asset
    of the connection (a gap report, RawFrame ``kind="gap"``);
  * ``book_check``: every ``price_change`` entry states the token's best bid and ask after it; the session keeps the
    token's book (``book`` + changes) and, when they disagree, a message of that token was lost since its last good
    check: a gap report for the token from that check to now, and (``resync``) an ``unsubscribe`` + ``subscribe`` of
    the token to get a fresh ``book`` [guess: a re-subscribe sends the initial dump again]. Until that book, its
    changes are emitted but not checked (``unchecked``);
  * a silent freeze (socket open, PONGs, no data) is NOT detectable from the payloads: the gatherer's silence
    watchdog must reconnect (:meth:`probe` has no venue command to ask with and returns False);
- never lets one message end the connection: anything unparseable or out of range goes to ``dead`` with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.codec import SCHEMA_VERSION
from schemas.raw import GapReport, RawFrame, encode_gap, encode_raw
from venues.polymarket import NAME, wire
from venues.polymarket.book import TokenBook
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload

__all__ = ["PolymarketSession", "SessionStats"]

CHANNEL = "market"


class SessionStats:
    """Plain counters (the I/O layer exports them); may be shared by a gatherer's sessions."""

    __slots__ = (
        "book_mismatch",
        "by_kind",
        "dead",
        "duplicates",
        "errors",
        "foreign",
        "gaps",
        "ignored",
        "pings",
        "pong_timeouts",
        "resyncs",
    )

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = dict.fromkeys(("snapshot", "delta", "trade", "lifecycle", "gap"), 0)
        self.dead = 0
        self.gaps = 0
        self.foreign = 0  # entries for assets another connection subscribed
        self.ignored = 0  # event types this collector does not record (custom features, new types)
        self.book_mismatch = 0
        self.resyncs = 0
        self.pings = 0
        self.pong_timeouts = 0
        # the counters every venue's stats share (the gatherer exports them): no sequence numbers, so no duplicate
        # is detected, and the channel sends no error messages
        self.duplicates = 0
        self.errors = 0


class _Held:
    """A book waiting for its position (the keys of its token's messages in its millisecond that follow it)."""

    __slots__ = ("after", "asset", "deadline_ns", "key", "payload", "recv_ns", "ts_ms")

    def __init__(self, asset: str, ts_ms: int, key: str, payload: bytes, recv_ns: int, deadline_ns: int) -> None:
        self.asset = asset
        self.ts_ms = ts_ms
        self.key = key
        self.payload = payload
        self.recv_ns = recv_ns
        self.deadline_ns = deadline_ns
        self.after: list[str] = []


class PolymarketSession:
    """Protocol state of one gatherer connection (see module docstring)."""

    def __init__(
        self,
        *,
        gatherer: str,
        conn_id: int,
        emit: Callable[[str, bytes], None],
        dead: Callable[[bytes, str], None],
        keyer: PolymarketKeyer | None = None,
        stats: SessionStats | None = None,
        log: Any = None,
        max_assets: int = wire.MAX_ASSETS_PER_CONNECTION,
        ids_per_frame: int = wire.MAX_IDS_PER_FRAME,
        ping_interval_s: float = wire.PING_INTERVAL_S,
        pong_timeout_s: float = wire.PONG_TIMEOUT_S,
        book_hold_s: float = 1.0,
        resync: bool = True,
    ) -> None:
        self.gatherer = gatherer
        self.conn_id = conn_id
        self._emit = emit
        self._dead = dead
        self.keyer = keyer or PolymarketKeyer()
        self.stats = stats or SessionStats()
        self.log = log
        self.max_assets = max_assets
        self.ids_per_frame = max(1, ids_per_frame)
        self.ping_ns = int(ping_interval_s * 1e9)
        self.pong_timeout_ns = int(pong_timeout_s * 1e9)
        self.hold_ns = int(book_hold_s * 1e9)
        self.resync = resync
        self.outbox: list[bytes] = []
        self.markets: dict[str, None] = {}  # subscribed assets, in subscription order
        self.books: dict[str, TokenBook] = {}  # tokens whose book is known and consistent
        self._checked_ns: dict[str, int] = {}  # last time each token's book agreed with the venue's
        self._held: dict[str, _Held] = {}
        self.up = False
        self.needs_reconnect = False
        self._last_recv_ns = 0
        self._down_from_ns: int | None = None
        self._next_ping_ns = 0
        self._ping_sent_ns: int | None = None
        self.venue_ms = 0  # the newest venue timestamp seen
        # what the gatherer's watchdog reads: no probe exists (``probe`` returns False), no lifecycle
        self.probe_state = ""
        self.probe_sent_ns = 0
        self.lifecycle_sid: int | None = None

    # -- commands --------------------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        out, self.outbox[:] = list(self.outbox), []
        return out

    @property
    def is_connected(self) -> bool:
        return self.up

    @property
    def has_output(self) -> bool:
        return bool(self.outbox)

    def _chunks(self, assets: list[str]) -> list[list[str]]:
        return [assets[i : i + self.ids_per_frame] for i in range(0, len(assets), self.ids_per_frame)]

    def connected(self, now_ns: int = 0) -> None:
        self.up = True
        self.needs_reconnect = False
        self.books.clear()
        self._ping_sent_ns = None
        self._next_ping_ns = now_ns + self.ping_ns
        chunks = self._chunks(list(self.markets))
        if chunks:
            self.outbox.append(wire.encode_subscribe(chunks[0]))
            self.outbox.extend(wire.encode_update("subscribe", c) for c in chunks[1:])
        else:  # an empty initial frame: the venue may close a connection that never subscribes [doc troubleshooting]
            self.outbox.append(wire.encode_subscribe([]))

    def disconnected(self, now_ns: int = 0) -> None:
        if self.up and self.markets:
            self._down_from_ns = self._last_recv_ns or now_ns
        self.up = False
        self.outbox.clear()
        self.flush(now_ns)

    def add_markets(self, assets: list[str]) -> list[str]:
        """Subscribe ``assets``; returns those that did not fit under ``max_assets`` (for another connection)."""
        new = [a for a in dict.fromkeys(assets) if a not in self.markets]
        room = max(0, self.max_assets - len(self.markets))
        taken, rest = new[:room], new[room:]
        self.markets.update(dict.fromkeys(taken))
        if self.up and taken:
            self.outbox.extend(wire.encode_update("subscribe", c) for c in self._chunks(taken))
        return rest

    def remove_markets(self, assets: list[str]) -> None:
        gone = [a for a in dict.fromkeys(assets) if a in self.markets]
        if not gone:
            return
        for a in gone:
            del self.markets[a]
            self.books.pop(a, None)
            self._checked_ns.pop(a, None)
            held = self._held.pop(a, None)
            if held is not None:
                self._emit_book(held)
        if self.up:
            self.outbox.extend(wire.encode_update("unsubscribe", c) for c in self._chunks(gone))

    @property
    def last_rx_ns(self) -> int:
        """Receive time of the last message (0: none yet)."""
        return self._last_recv_ns

    def probe(self, now_ns: int) -> bool:
        """The venue has no command whose reply would show data this connection missed: nothing to probe."""
        return False

    # -- time ------------------------------------------------------------------------------------------------

    def tick(self, now_ns: int) -> None:
        if self.up:
            late = self._ping_sent_ns is not None and now_ns - self._ping_sent_ns > self.pong_timeout_ns
            if late and not self.needs_reconnect:
                self.stats.pong_timeouts += 1
                self.needs_reconnect = True
            if now_ns >= self._next_ping_ns:
                self.outbox.append(wire.PING)
                self.stats.pings += 1
                if self._ping_sent_ns is None:
                    self._ping_sent_ns = now_ns
                self._next_ping_ns = now_ns + self.ping_ns
        for held in [h for h in self._held.values() if h.deadline_ns <= now_ns]:
            del self._held[held.asset]
            self._emit_book(held)

    def flush(self, now_ns: int) -> None:
        """Emit every held book now (shutdown, disconnect)."""
        held, self._held = list(self._held.values()), {}
        for h in held:
            self._emit_book(h)

    # -- received data ---------------------------------------------------------------------------------------

    def receive(self, data: bytes, recv_ns: int) -> None:
        stripped = data.strip()
        if stripped == wire.PONG:
            self._ping_sent_ns = None
            return
        if self._down_from_ns is not None:
            self._report("down", list(self.markets), self._down_from_ns, recv_ns, recv_ns)
            self._down_from_ns = None
        self._last_recv_ns = recv_ns
        try:
            messages = wire.split_frame(data)
        except Exception as exc:
            self._reject(data, f"frame: {exc}")
            return
        for message in messages:
            try:
                self._message(message, recv_ns)
            except Exception as exc:  # one bad message never ends the connection
                self._reject(message, f"{type(exc).__name__}: {exc}")

    def _message(self, message: bytes, recv_ns: int) -> None:
        event_type = wire.head(message).event_type
        if event_type == wire.PRICE_CHANGE:
            self._price_change(message, recv_ns)
        elif event_type == wire.BOOK:
            self._book(message, recv_ns)
        elif event_type == wire.LAST_TRADE_PRICE:
            m = wire.decode(event_type, message)
            if self._mine(m.asset_id):
                self._clock(m.timestamp)
                self._frame("trade", m.asset_id, self.keyer.trade(m), message, recv_ns, m.timestamp)
        elif event_type == wire.TICK_SIZE_CHANGE:
            m = wire.decode(event_type, message)
            if self._mine(m.asset_id):
                self._clock(m.timestamp)
                self._frame("lifecycle", m.asset_id, self.keyer.tick(m), message, recv_ns, m.timestamp)
        elif event_type:
            self.stats.ignored += 1
        else:
            raise ValueError("message without event_type")

    def _mine(self, asset: str) -> bool:
        if asset in self.markets:
            return True
        self.stats.foreign += 1
        return False

    def _clock(self, ts_ms: int) -> None:
        if ts_ms > self.venue_ms:
            self.venue_ms = ts_ms

    def _book(self, message: bytes, recv_ns: int) -> None:
        m = wire.decode(wire.BOOK, message)
        if not self._mine(m.asset_id):
            return
        key = self.keyer.book(m)  # checks the numbers before anything changes
        self._clock(m.timestamp)
        book = TokenBook()
        book.reset(m)
        self.books[m.asset_id] = book
        self._checked_ns[m.asset_id] = recv_ns
        previous = self._held.pop(m.asset_id, None)
        if previous is not None:
            self._emit_book(previous)
        self._held[m.asset_id] = _Held(m.asset_id, m.timestamp, key, message, recv_ns, recv_ns + self.hold_ns)

    def _price_change(self, message: bytes, recv_ns: int) -> None:
        raw = wire.price_change_raw.decode(message)
        self._clock(raw.timestamp)
        for entry_raw in raw.price_changes:
            entry_bytes = bytes(entry_raw)
            try:
                e = wire.price_change_entry.decode(entry_bytes)
                if not self._mine(e.asset_id):
                    continue
                key, ordinal = self.keyer.change(raw.timestamp, e)
            except Exception as exc:  # one bad entry: the others of the message are still the venue's events
                self._reject(change_payload(raw.market, raw.timestamp, entry_bytes), f"{type(exc).__name__}: {exc}")
                continue
            payload = change_payload(raw.market, raw.timestamp, entry_bytes)
            self._frame("delta", e.asset_id, key, payload, recv_ns, raw.timestamp, ordinal)
            book = self.books.get(e.asset_id)
            if book is None:
                continue
            book.apply(e)
            if book.agrees(e):
                self._checked_ns[e.asset_id] = recv_ns
                continue
            self.stats.book_mismatch += 1
            del self.books[e.asset_id]
            self._report("book_check", [e.asset_id], self._checked_ns.get(e.asset_id, recv_ns), recv_ns, recv_ns)
            if self.resync and self.up:
                self.stats.resyncs += 1
                self.outbox.append(wire.encode_update("unsubscribe", [e.asset_id]))
                self.outbox.append(wire.encode_update("subscribe", [e.asset_id]))

    # -- output ----------------------------------------------------------------------------------------------

    def _frame(
        self, kind: str, asset: str, key: str, payload: bytes, recv_ns: int, ts_ms: int, ordinal: int = 0
    ) -> None:
        held = self._held.get(asset)
        if held is not None:
            if held.ts_ms == ts_ms:
                held.after.append(key)
            elif held.ts_ms < ts_ms:  # the token's stream moved past the book's millisecond: its position is known
                del self._held[asset]
                self._emit_book(held)
        frame = RawFrame(
            v=SCHEMA_VERSION, venue=NAME, gatherer=self.gatherer, conn=self.conn_id, sid=None, seq=None,
            recv_ns=recv_ns, kind=kind, market=asset, event_key=key, payload=payload,  # type: ignore[arg-type]
            ordinal=ordinal,
        )  # fmt: skip
        self.stats.by_kind[kind] += 1
        self._emit(asset, encode_raw(frame))

    def _emit_book(self, held: _Held) -> None:
        frame = RawFrame(
            v=SCHEMA_VERSION, venue=NAME, gatherer=self.gatherer, conn=self.conn_id, sid=None, seq=None,
            recv_ns=held.recv_ns, kind="snapshot", market=held.asset, event_key=held.key, payload=held.payload,
            venue_ms=held.ts_ms, after_keys=held.after,
        )  # fmt: skip
        self.stats.by_kind["snapshot"] += 1
        self._emit(held.asset, encode_raw(frame))

    def _report(self, kind: str, assets: list[str], from_ns: int, to_ns: int, recv_ns: int) -> None:
        report = GapReport(kind=kind, conn=self.conn_id, from_ns=from_ns, to_ns=to_ns, channel=CHANNEL,
                           markets=list(assets))  # fmt: skip
        frame = RawFrame(
            v=SCHEMA_VERSION, venue=NAME, gatherer=self.gatherer, conn=self.conn_id, sid=None, seq=None,
            recv_ns=recv_ns, kind="gap", market=assets[0] if len(assets) == 1 else "*",
            event_key=f"gap:{self.gatherer}:{self.conn_id}:{kind}:{from_ns}:{to_ns}", payload=encode_gap(report),
        )  # fmt: skip
        self.stats.gaps += 1
        self.stats.by_kind["gap"] += 1
        self._emit(frame.market, encode_raw(frame))
        if self.log is not None:
            self.log.warning("polymarket_gap", kind=kind, conn=self.conn_id, assets=len(assets))

    def _reject(self, data: bytes, reason: str) -> None:
        self.stats.dead += 1
        self._dead(data, f"polymarket: {reason}")
