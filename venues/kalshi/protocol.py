"""Client side of the Kalshi WebSocket protocol for ONE connection, sans I/O (no asyncio, no socket, no clock).

The I/O layer (:mod:`ingest.connection`) calls :meth:`KalshiSession.connected` after each (re)connect, feeds every
received message with :meth:`KalshiSession.receive` (bytes + receive time), calls :meth:`KalshiSession.tick` a few
times a second, and sends what :meth:`KalshiSession.data_to_send` returns (``outbox``, the same list for the
session's life, is non-empty while commands wait: the hot path tests it instead of calling ``has_output``). The
session:

- subscribes its markets in groups of at most ``sub_cap`` markets (one ``subscribe`` per group with the filtered
  channels, hence one sid per channel per group); error 26 halves the group and retries, and lowers ``sub_cap`` for
  later groups; markets added later go to a group with room (``update_subscription add_markets``, one command per sid)
  or a new group; removed ones are deleted from their group's sids;
- subscribes the unfiltered lifecycle channel when ``lifecycle`` is set (two connections per gatherer do);
- checks ``seq`` per sid BEFORE anything else: a repeated seq (<= last) is counted and dropped (it gets no key and
  moves no counter); a skip, and a new sid whose first message is not seq 1, become gap reports (RawFrame
  ``kind="gap"``, payload :class:`schemas.raw.GapReport`) and, on an orderbook sid, a ``get_snapshot`` for that sid;
  so do the windows in which the connection was down (from its last message to its resubscription) and in which a
  sid ended by a terminal venue error was being subscribed again;
- decodes each market-data body (``venues.kalshi.messages`` structs, Decimal-exact, numbers or strings; a delta or
  ticker message in the venue's common shape is read, envelope and body, by one call of the C accelerator
  (:data:`venues.kalshi.keys.MESSAGE_PARTS`), which hands every other message back to this path), derives
  the event key (:mod:`venues.kalshi.keys`; lifecycle messages by stream position, :mod:`venues.kalshi.anchors`:
  every key a copy can derive, its weak key and anchor references; an anchor is recorded once per gatherer, every
  other lifecycle copy of each subscription is recorded, since the dedup stage's weak matching needs to know which
  subscriptions delivered it),
  places every snapshot in its market's delta stream (:mod:`venues.kalshi.snapshots`), and emits one encoded
  RawFrame per market message, payload = verbatim bytes; a frame that is a JSON array of messages is split;
- never lets one message end the connection: anything unparseable, any out-of-range or oversized field, any
  exception while handling one message goes to ``dead`` (topic ``dlq``) with its reason and is counted;
- answers the silence watchdog: :meth:`probe` asks the venue, per sid, for its current seq with a no-op command; a
  reply whose seq is ahead of what arrived means the venue sent data this connection never got (frozen), a reply in
  step means the markets are simply quiet (:attr:`probe_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from schemas.codec import SCHEMA_VERSION
from schemas.raw import GapReport, RawFrame, encode_gap, encode_raw
from schemas.raw_encode import ENCODE_LIVE_C, LIVE_TAIL, encode_live_py, live_head
from venues.kalshi.anchors import AnchorChain, LcKey, Seen, anchor_key, is_anchor, received_by, weak_key
from venues.kalshi.channels import MARKET_LIFECYCLE, ORDERBOOK_DELTA
from venues.kalshi.keys import MESSAGE_PARTS, EventKeyer, digest
from venues.kalshi.messages import KIND_BY_TYPE, LifecycleMsg, TradeMsg
from venues.kalshi.snapshots import PendingSnapshot, SnapshotPlacer

__all__ = ["LIFECYCLE", "TERMINAL_ERRORS", "Group", "KalshiSession", "SessionStats"]

VENUE = "kalshi"
LIFECYCLE = MARKET_LIFECYCLE
ORDERBOOK = ORDERBOOK_DELTA
ERR_MARKET_LIMIT = 26
TERMINAL_ERRORS = frozenset({10, 25})  # the sid is dead: subscribe its markets again
ALL = ["*"]
MAX_TICKER = 256  # longer "tickers" are not the venue's
_SEQ_CHANNELS = (ORDERBOOK, "trade")  # filtered channels whose sids count seq (probe-able)


class _Env(msgspec.Struct):
    type: str = ""
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    msg: msgspec.Raw = msgspec.Raw(b"null")


class _Subscribed(msgspec.Struct):
    channel: str
    sid: int


class _EventLevel(msgspec.Struct):
    """``event_lifecycle`` / ``event_fee_update`` bodies (same channel): keyed by their event ticker."""

    event_ticker: str


class _LifecycleHead(msgspec.Struct):
    """What the market registry needs of a lifecycle message whose other fields do not decode."""

    market_ticker: str = ""
    event_type: str = ""


class _Error(msgspec.Struct):
    code: int = 0
    msg: str = ""


_env = msgspec.json.Decoder(_Env)
_many = msgspec.json.Decoder(list[msgspec.Raw])
_subscribed = msgspec.json.Decoder(_Subscribed)
_error = msgspec.json.Decoder(_Error)
_trade = msgspec.json.Decoder(TradeMsg, strict=False)
_lifecycle = msgspec.json.Decoder(LifecycleMsg, strict=False)
_event_level = msgspec.json.Decoder(_EventLevel)
_lifecycle_head = msgspec.json.Decoder(_LifecycleHead)
_cmd = msgspec.json.Encoder()
# A RawFrame is a msgpack array (array_like) of these fields in this order: the hot path encodes the tuple directly.
_FRAME_FIELDS = (
    "v", "venue", "gatherer", "conn", "sid", "seq", "recv_ns", "kind", "market", "event_key", "payload", "venue_ms",
    "after_keys", "alt_keys", "weak_key", "weak_refs", "weak_sub", "ordinal",
)  # fmt: skip
_NO_AFTER: list[str] = []
if (
    tuple(f.name for f in msgspec.structs.fields(RawFrame)) != _FRAME_FIELDS
    or not RawFrame.__struct_config__.array_like
):
    raise ImportError("schemas.raw.RawFrame changed: update the tuple encoding in KalshiSession.receive")
_frame = msgspec.msgpack.Encoder(decimal_format="string")
# C: a delta or ticker message in the venue's common shape -> (kind, sid, seq, market, digest, ts_ms), else None
# (None when the accelerator was not built); see venues/kalshi/_deltakey.c
_message_parts = MESSAGE_PARTS
# C: a live frame's bytes (None when not built); see schemas/_rawframe.c
_encode_live = ENCODE_LIVE_C


class SessionStats:
    """Plain counters (the I/O layer exports them to Prometheus); one object shared by a gatherer's sessions."""

    __slots__ = (
        "by_kind",
        "dead",
        "duplicates",
        "errors",
        "gaps",
        "lifecycle_backward",
        "lifecycle_ended_dropped",
        "lifecycle_ended_sent",
        "lifecycle_loose",
        "lifecycle_unanchored",
        "lifecycle_uncertain",
        "probes",
        "resnapshots",
        "resubscribes",
    )

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = dict.fromkeys(("snapshot", "delta", "trade", "ticker", "lifecycle", "gap"), 0)
        self.gaps = 0
        self.duplicates = 0
        self.dead = 0
        self.errors = 0
        self.resnapshots = 0
        self.resubscribes = 0
        self.probes = 0
        self.lifecycle_backward = 0  # lifecycle messages keyed by the anchor before them (no anchor followed)
        self.lifecycle_unanchored = 0  # ... that had no anchor on either side (their key is this copy's own)
        self.lifecycle_loose = 0  # lifecycle copies with no anchor before them: matched by weak key in dedup
        self.lifecycle_uncertain = 0  # ... with no key sure to be shared (gap or no anchor): matched by weak key
        # copies an ended lifecycle subscription still waited to key: dropped (the gatherer's other subscription
        # certainly received them all) or keyed then and sent
        self.lifecycle_ended_dropped = 0
        self.lifecycle_ended_sent = 0


class Group:
    """Markets subscribed with one ``subscribe`` command: one sid per filtered channel once confirmed."""

    __slots__ = ("markets", "pending", "sids")

    def __init__(self, markets: list[str]) -> None:
        self.markets = markets
        self.sids: dict[str, int] = {}
        self.pending = True


class _Cmd:
    __slots__ = ("action", "channel", "group", "markets")

    def __init__(self, action: str, group: Group | None, markets: list[str], channel: str = "") -> None:
        self.action = action
        self.group = group
        self.markets = markets
        self.channel = channel


class _Lc:
    """A lifecycle message waiting for its key (see :mod:`venues.kalshi.anchors`)."""

    __slots__ = ("content", "data", "market", "recv_ns", "seq", "sid", "sub")

    def __init__(self, market: str, data: bytes, sid: int, seq: int, recv_ns: int, content: str, sub: str) -> None:
        self.sub = sub  # the subscription instance (RawFrame.weak_sub)
        self.content = content
        self.market = market
        self.data = data
        self.sid = sid
        self.seq = seq
        self.recv_ns = recv_ns


class KalshiSession:
    """Protocol state of one gatherer connection (see module docstring)."""

    def __init__(
        self,
        *,
        gatherer: str,
        conn_id: int,
        channels: list[str],
        sub_cap: int,
        keyer: EventKeyer,
        emit: Callable[[str, bytes], None],
        dead: Callable[[bytes, str], None],
        lifecycle: bool = False,
        on_lifecycle: Callable[[str, LifecycleMsg, int], None] | None = None,
        log: Any = None,
        stats: SessionStats | None = None,
        snapshot_hold_s: float = 1.0,
        anchor_hold_s: float = 10.0,
        anchor_span: int = 1000,
        anchor_max_wait_ms: float = 0.0,
        lifecycle_peers: Callable[[KalshiSession], Iterable[KalshiSession]] | None = None,
        lifecycle_seen: Callable[[str], bool] | None = None,
    ) -> None:
        self.gatherer = gatherer
        self.conn_id = conn_id
        self._frame_head = live_head(VENUE, gatherer, conn_id)  # a live frame's fixed fields (schemas.raw_encode)
        self.filtered = [c for c in channels if c != LIFECYCLE]
        self.lifecycle = lifecycle and LIFECYCLE in channels
        self.sub_cap = max(1, sub_cap)
        self.keyer = keyer
        self._occurrence = keyer.occurrence  # (digest, ts_ms) -> n, for the keys of the C path
        self._emit = emit
        self._dead = dead
        self._on_lifecycle = on_lifecycle
        self._log = log
        self.stats = stats or SessionStats()
        self.markets: dict[str, None] = {}  # desired markets, insertion-ordered
        self.groups: list[Group] = []
        self.is_connected = False
        self.outbox: list[bytes] = []  # commands not yet taken by data_to_send(); one list for the session's life
        self._next_id = 1
        self._pending: dict[int, _Cmd] = {}
        self._sid_group: dict[int, tuple[Group, str]] = {}
        self._seq: dict[int, int] = {}
        self._seq_ns: dict[int, int] = {}  # receive time of each sid's last message (a gap window's start)
        self.lifecycle_sid: int | None = None
        self._anchor_hold_ns = int(anchor_hold_s * 1e9)
        self._anchor_span = anchor_span
        self._anchor_max_wait_ns = int(anchor_max_wait_ms * 1e6)
        self._chains: dict[int, AnchorChain[_Lc]] = {}
        self._ended: list[AnchorChain[_Lc]] = []  # chains of ended subscriptions still holding copies for their trail
        self._lifecycle_peers = lifecycle_peers  # this gatherer's other connected sessions
        self._lifecycle_seen = lifecycle_seen  # this gatherer already emitted that lifecycle key (other sid)?
        self.placer = SnapshotPlacer(self._emit_snapshot, int(snapshot_hold_s * 1e9))
        self._snaps = self.placer.pending  # the hot path tests it (non-empty while snapshots wait)
        self._down_from_ns = 0  # the connection dropped: its last message's time, until resubscribed
        self._resub: dict[int, tuple[int, list[str]]] = {}  # id(new group) -> (from_ns, markets): a resubscription
        self._probes: dict[int, int] = {}  # probe command id -> sid (0 for list_subscriptions)
        self.probe_sent_ns = 0
        self.probe_state = "idle"  # idle | waiting | quiet | behind
        self.last_data_ns = 0
        self.last_rx_ns = 0  # any message, control replies included: the last evidence of a working socket
        self.first_data_ns = 0
        self.data_messages = 0
        self._lc_resub_from_ns = 0  # the lifecycle sid ended by a venue error: since when, until resubscribed

    # -- commands ------------------------------------------------------------------------------
    def data_to_send(self) -> list[bytes]:
        out = self.outbox[:]
        self.outbox.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self.outbox)

    def _send(self, cmd: str, params: dict[str, Any], pending: _Cmd | None) -> int:
        cid = self._next_id
        self._next_id += 1
        if pending is not None:
            self._pending[cid] = pending
        self.outbox.append(_cmd.encode({"id": cid, "cmd": cmd, "params": params}))
        return cid

    def _subscribe_group(self, group: Group) -> None:
        self.groups.append(group)
        params = {"channels": self.filtered, "market_tickers": group.markets, "use_yes_price": False}
        self._send("subscribe", params, _Cmd("subscribe", group, group.markets))

    def _subscribe_new(self, markets: list[str]) -> list[Group]:
        if not self.filtered:
            return []
        cap = self.sub_cap
        groups = [Group(markets[i : i + cap]) for i in range(0, len(markets), cap)]
        for group in groups:
            self._subscribe_group(group)
        return groups

    def _subscribe_lifecycle(self) -> None:
        self._send("subscribe", {"channels": [LIFECYCLE]}, _Cmd("lifecycle", None, []))

    def connected(self, now_ns: int = 0) -> None:
        """A new WebSocket is open: forget the old sids and seqs, subscribe everything again."""
        self.is_connected = True
        self.groups = []
        self._pending.clear()
        self._sid_group.clear()
        self._seq.clear()
        self._seq_ns.clear()
        self._probes.clear()
        self.probe_state = "idle"
        self._resub.clear()
        if self.lifecycle:
            self._subscribe_lifecycle()
        self._subscribe_new(list(self.markets))
        self._maybe_close_down_window(now_ns)

    def disconnected(self, now_ns: int = 0) -> None:
        """The WebSocket is gone: place waiting snapshots, key waiting lifecycle messages, open a down window."""
        self.is_connected = False
        self.outbox.clear()
        self.placer.close(now_ns)
        for sid in list(self._chains):
            self._end_lifecycle_sid(sid)
        self.lifecycle_sid = None
        if (self.markets or self.lifecycle) and not self._down_from_ns:
            self._down_from_ns = self.last_rx_ns or now_ns

    def add_markets(self, tickers: list[str]) -> None:
        """Record ``tickers`` on this connection (subscribed now when connected, else on connect)."""
        new = [t for t in tickers if t not in self.markets]
        for t in new:
            self.markets[t] = None
        if not new or not self.is_connected or not self.filtered:
            return
        rest = new
        for group in self.groups:
            room = self.sub_cap - len(group.markets)
            if not rest or group.pending or room <= 0 or len(group.sids) < len(self.filtered):
                continue
            part, rest = rest[:room], rest[room:]
            group.markets.extend(part)
            # One command per sid, so the venue applies them one by one and may publish events in between. The
            # orderbook add goes LAST: its snapshot starts our coverage of these markets, so by then the venue (which
            # handles a connection's commands in order) must already send their trades and tickers.
            for channel, sid in sorted(group.sids.items(), key=lambda item: item[0] == ORDERBOOK):
                params = {"sid": sid, "action": "add_markets", "market_tickers": part}
                self._send("update_subscription", params, _Cmd("add_markets", group, part, channel))
        if rest:
            self._subscribe_new(rest)

    def remove_markets(self, tickers: list[str]) -> None:
        gone = {t for t in tickers if t in self.markets}
        for t in gone:
            del self.markets[t]
        if not gone or not self.is_connected:
            return
        for group in self.groups:
            hit = [m for m in group.markets if m in gone]
            if not hit:
                continue
            group.markets = [m for m in group.markets if m not in gone]
            for channel, sid in group.sids.items():
                params = {"sid": sid, "action": "delete_markets", "market_tickers": hit}
                self._send("update_subscription", params, _Cmd("delete_markets", group, hit, channel))

    def request_snapshot(self, sid: int) -> None:
        self.stats.resnapshots += 1
        self._send("update_subscription", {"sid": sid, "action": "get_snapshot"}, None)

    def _resubscribe(self, group: Group, now_ns: int) -> None:
        """Drop ``group``'s sids (unsubscribe the live ones) and subscribe its markets afresh."""
        self.stats.resubscribes += 1
        if group in self.groups:
            self.groups.remove(group)
        live = [sid for sid in group.sids.values() if sid in self._sid_group]
        from_ns = max((self._seq_ns.get(sid, 0) for sid in group.sids.values()), default=0) or now_ns
        for sid in group.sids.values():
            self._sid_group.pop(sid, None)
            self._seq.pop(sid, None)
            self._seq_ns.pop(sid, None)
            self.placer.end_sid(sid, now_ns)
        if live:
            self._send("unsubscribe", {"sids": live}, None)
        markets = [m for m in group.markets if m in self.markets]
        for new in self._subscribe_new(markets):
            self._resub[id(new)] = (from_ns, new.markets)

    # -- the silence watchdog's probe -------------------------------------------------------------
    def probe(self, now_ns: int) -> bool:
        """Ask the venue where each seq-carrying sid stands (a no-op ``add_markets`` of a market it already has; the
        ``ok`` reply carries the sid's seq). Without such a sid, ``list_subscriptions`` checks that commands are
        answered. Returns False when nothing could be asked (not connected)."""
        if not self.is_connected:
            return False
        self.stats.probes += 1
        self._probes.clear()
        for group in self.groups:
            if group.pending or not group.markets:
                continue
            for channel in _SEQ_CHANNELS:
                sid = group.sids.get(channel)
                if sid is not None:
                    params = {"sid": sid, "action": "add_markets", "market_tickers": group.markets[:1]}
                    self._probes[self._send("update_subscription", params, None)] = sid
        if not self._probes:
            self._probes[self._send("list_subscriptions", {}, None)] = 0
        self.probe_sent_ns = now_ns
        self.probe_state = "waiting"
        return True

    def _probe_reply(self, env: _Env, now_ns: int) -> None:
        sid = self._probes.pop(env.id or 0)
        if sid and env.seq is not None and env.seq > self._seq.get(sid, 0):
            # The venue numbered messages on this sid that never arrived (the reply came after them, in order).
            self._gap("seq", sid, self._seq.get(sid, 0) + 1, env.seq + 1, now_ns, self._seq_ns.get(sid, 0))
            self.probe_state = "behind"
            return
        if not self._probes and self.probe_state == "waiting":
            self.probe_state = "quiet"

    # -- input ---------------------------------------------------------------------------------
    def receive(self, data: bytes, recv_ns: int) -> None:
        """Handle one WebSocket message (a JSON object, or a JSON array of them); never raises."""
        try:
            self._receive(data, recv_ns)
        except Exception as exc:  # one message must never end the connection: it becomes a dead letter
            self._reject(data, f"unhandled {type(exc).__name__}: {str(exc)[:300]}")

    def _receive(self, data: bytes, recv_ns: int) -> None:
        self.last_rx_ns = recv_ns
        fast = _message_parts(data) if _message_parts is not None else None
        env: _Env | None = None
        if fast is not None:  # a delta or ticker in the venue's common shape: envelope and body read in C (keys)
            kind, sid, seq, market, digest, venue_ms = fast
        else:
            try:
                env = _env.decode(data)
            except msgspec.DecodeError as exc:
                if data[:1] == b"[":
                    try:
                        parts = _many.decode(data)
                    except msgspec.DecodeError:
                        parts = None
                    if parts is not None:
                        for part in parts:
                            self.receive(bytes(part), recv_ns)
                        return
                self._reject(data, f"not a JSON object: {exc}")
                return
            kind = KIND_BY_TYPE.get(env.type)
            if kind is None:
                self._control(env, data, recv_ns)
                return
            sid = env.sid
            seq = env.seq
        if seq is not None and sid is not None:  # the seq check comes first: a repeat gets no key, moves no counter
            last = self._seq.get(sid)
            if last is None:
                if seq != 1 and (sid in self._sid_group or sid == self.lifecycle_sid):
                    self._gap("first_seq", sid, 1, seq, recv_ns, recv_ns)
            elif seq != last + 1:
                if seq <= last:
                    self.stats.duplicates += 1
                    return
                self._gap("seq", sid, last + 1, seq, recv_ns, self._seq_ns.get(sid, 0))
            self._seq[sid] = seq
            self._seq_ns[sid] = recv_ns
        if not self.first_data_ns:
            self.first_data_ns = recv_ns
        self.last_data_ns = recv_ns
        self.data_messages += 1
        if env is None:  # the C path: the same digest and venue time as EventKeyer.delta_body/ticker_body
            if kind == "delta":
                key = f"d:{digest}:{self._occurrence(digest, venue_ms)}"
                if self._snaps:
                    self.placer.delta(sid, market, venue_ms, key)
            else:
                key = f"k:{digest}:{self._occurrence(digest, venue_ms)}"
        else:
            body = env.msg
            try:
                venue_ms = None
                if kind == "delta":
                    market, key, venue_ms = self.keyer.delta_body(body)
                    if self._snaps:
                        self.placer.delta(sid or 0, market, venue_ms, key)
                elif kind == "ticker":
                    market, key, venue_ms = self.keyer.ticker_body(body)
                elif kind == "trade":
                    t = _trade.decode(body)
                    market = t.market_ticker
                    key = self.keyer.trade(t)
                    venue_ms = t.ts_ms if t.ts_ms is not None else (t.ts * 1000 if t.ts is not None else None)
                elif kind == "snapshot":
                    market, key = self.keyer.snapshot_body(body, _check_ticker)
                    self.stats.by_kind[kind] += 1
                    self.placer.snapshot(sid or 0, market, recv_ns, (market, key, sid, seq, recv_ns, data))
                    return
                else:
                    self._lifecycle_message(env, body, data, recv_ns)
                    return
                if len(market) > MAX_TICKER:
                    _check_ticker(market)
            except (msgspec.DecodeError, ValueError, ArithmeticError) as exc:
                self._reject(data, f"{env.type}: {exc}")
                return
        if venue_ms is not None and self.placer.awaiting_clock:
            self.placer.clock(venue_ms)
        self.stats.by_kind[kind] += 1
        # encode_raw(RawFrame(venue=VENUE, ..., payload=data)), byte for byte, without the struct (schemas.raw_encode)
        head = self._frame_head
        value = _encode_live(head, sid, seq, recv_ns, kind, market, key, data, LIVE_TAIL) if _encode_live else None
        if value is None:  # not built, or a shape the C path hands back
            value = encode_live_py(head, sid, seq, recv_ns, kind, market, key, data, LIVE_TAIL)
        self._emit(market, value)

    def _emit_snapshot(self, p: PendingSnapshot, venue_ms: int, after: list[str]) -> None:
        market, key, sid, seq, recv_ns, data = p.frame  # type: ignore[misc]
        self._emit(
            market,
            _frame.encode(
                (
                    SCHEMA_VERSION,
                    VENUE,
                    self.gatherer,
                    self.conn_id,
                    sid,
                    seq,
                    recv_ns,
                    "snapshot",
                    market,
                    key,
                    data,
                    venue_ms,
                    after,
                    _NO_AFTER,
                    "",
                    _NO_AFTER,
                    "",
                    0,
                )
            ),
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def _lifecycle_message(self, env: _Env, body: msgspec.Raw, data: bytes, recv_ns: int) -> None:
        lc: LifecycleMsg | None = None
        if env.type != LIFECYCLE:  # event_lifecycle / event_fee_update: no market, no event_type
            market = _event_level.decode(body).event_ticker
        else:
            try:
                lc = _lifecycle.decode(body)
            except msgspec.DecodeError:
                self._lifecycle_head_only(body, recv_ns)
                raise
            market = lc.market_ticker or lc.event_ticker
        if not market:
            raise msgspec.ValidationError("lifecycle message without market_ticker or event_ticker")
        _check_ticker(market)
        if lc is not None and self._on_lifecycle is not None:  # before its key: a bad field must not hide it
            try:
                self._on_lifecycle(market, lc, recv_ns)
            except Exception:  # the market registry failed on it: the message itself is recorded all the same
                if self._log is not None:
                    self._log.exception("lifecycle_callback_failed", conn=self.conn_id, market=market)
        content = self.keyer.body_digest(market, body)
        self.stats.by_kind["lifecycle"] += 1
        self._key_lifecycle(env, lc, market, content, data, recv_ns)

    def _lifecycle_head_only(self, body: msgspec.Raw, recv_ns: int) -> None:
        """A lifecycle message that will be dead-lettered still tells the registry its market and event type (a
        `created` or `settled` with one bad field must not leave every gatherer holding the wrong markets)."""
        if self._on_lifecycle is None:
            return
        try:
            head = _lifecycle_head.decode(body)
        except msgspec.DecodeError:
            return
        if head.market_ticker and len(head.market_ticker) <= MAX_TICKER:
            lc = LifecycleMsg(event_type=head.event_type, market_ticker=head.market_ticker)
            try:
                self._on_lifecycle(head.market_ticker, lc, recv_ns)
            except Exception:
                if self._log is not None:
                    self._log.exception("lifecycle_callback_failed", conn=self.conn_id, market=head.market_ticker)

    def _key_lifecycle(
        self, env: _Env, lc: LifecycleMsg | None, market: str, content: str, data: bytes, recv_ns: int
    ) -> None:
        sid, seq = env.sid, env.seq
        anchor = is_anchor(env.type, lc.event_type if lc is not None else "")
        if sid is None or seq is None:  # the spec requires both; without a position the key is this copy's own
            item = _Lc(
                market, data, sid or 0, seq or 0, recv_ns, content, f"{self.gatherer}:{self.conn_id}:-@{recv_ns}"
            )
            if anchor:
                key = anchor_key(content)
                self._emit_lifecycle(item, LcKey(key, (), False, (), key))
                return
            self.stats.lifecycle_unanchored += 1
            self.stats.lifecycle_loose += 1
            own = "l:" + digest(f"{content}?{self.gatherer}:{self.conn_id}:{recv_ns}".encode())
            self.stats.lifecycle_uncertain += 1
            self._emit_lifecycle(item, LcKey(own, (), True, (), own))
            return
        chain = self._chains.get(sid)
        if chain is None:
            # the subscription instance: connections and sids are numbered alike again after a reconnect or a restart
            chain = self._chains[sid] = AnchorChain(
                self._anchor_span,
                self._anchor_hold_ns,
                f"{self.gatherer}:{self.conn_id}:{sid}@{recv_ns}",
                self._anchor_max_wait_ns,
            )
        self._emit_keyed(
            chain,
            chain.push(
                _Lc(market, data, sid, seq, recv_ns, content, chain.unanchored_tag), content, seq, anchor, recv_ns
            ),
        )

    def _emit_keyed(self, chain: AnchorChain[_Lc], keyed: list[tuple[_Lc, LcKey]]) -> None:
        """Emit what ``chain`` keyed; count its fallbacks (backward, loose, uncertain, unanchored)."""
        if not keyed:
            return
        stats = self.stats
        before = chain.backward, chain.unanchored, chain.loose, chain.uncertain
        for item, key in keyed:
            self._emit_lifecycle(item, key)
        stats.lifecycle_backward += chain.backward - before[0]
        stats.lifecycle_unanchored += chain.unanchored - before[1]
        loose, uncertain = chain.loose - before[2], chain.uncertain - before[3]
        stats.lifecycle_loose += loose
        stats.lifecycle_uncertain += uncertain
        if (loose or uncertain) and self._log is not None:
            self._log.info("lifecycle_uncertain_keys", conn=self.conn_id, loose=loose, uncertain=uncertain)

    def _emit_lifecycle(self, item: _Lc, key: LcKey) -> None:
        if not key.weak and self._lifecycle_seen is not None and self._lifecycle_seen(key.shared):
            return  # an anchor this gatherer's other lifecycle subscription already recorded
        # (every other copy is recorded: the dedup stage's weak matching needs to know which subscriptions had it)
        self._emit(
            item.market,
            _frame.encode(
                (
                    SCHEMA_VERSION,
                    VENUE,
                    self.gatherer,
                    self.conn_id,
                    item.sid,
                    item.seq,
                    item.recv_ns,
                    "lifecycle",
                    item.market,
                    key.key,
                    item.data,
                    None,
                    _NO_AFTER,
                    key.alt,
                    weak_key(item.content) if key.weak else "",
                    key.refs,
                    item.sub,
                    0,
                )
            ),
        )

    def lifecycle_streams(self) -> list[Sequence[Seen]]:
        """What each live lifecycle subscription of this session received last (another session's ended subscription
        asks, :meth:`_end_lifecycle_sid`)."""
        return [chain.recent for chain in self._chains.values()] if self.is_connected else []

    def _received_elsewhere(self, chain: AnchorChain[_Lc]) -> bool:
        """Whether one of this gatherer's other live lifecycle subscriptions certainly received every copy ``chain``
        (ended) still waits to key (:func:`venues.kalshi.anchors.received_by`)."""
        if self._lifecycle_peers is None:
            return False
        wanted = chain.waiting_positions()
        for peer in self._lifecycle_peers(self):
            for recent in peer.lifecycle_streams():
                if len(received_by(chain.recent, recent, wanted)) == len(wanted):
                    return True
        return False

    def _end_lifecycle_sid(self, sid: int) -> None:
        """A lifecycle subscription ended: its waiting messages are dropped if another of this gatherer's lifecycle
        subscriptions certainly received every one of them too, else keyed as at the stream's end
        (:mod:`venues.kalshi.anchors`); the copies it keyed and
        holds for their trail go out when due, in due order with the gatherer's other copies (true copies, whatever
        the coverage)."""
        chain = self._chains.pop(sid, None)
        if chain is None:
            return
        oldest = chain.oldest_unkeyed_ns()
        if oldest is not None:
            if self._received_elsewhere(chain):
                self.stats.lifecycle_ended_dropped += len(chain.drop_waiting())
            else:
                keyed = chain.close()
                self.stats.lifecycle_ended_sent += len(keyed)
                self._emit_keyed(chain, keyed)
        if chain.held_due_ns() is not None:
            self._ended.append(chain)  # copies held for their trail: they leave when due, in due order (held_order)

    # -- time ----------------------------------------------------------------------------------
    def tick(self, now_ns: int) -> None:
        """Place snapshots held long enough; key lifecycle messages of a stalled stream (call a few times a second)."""
        if self._snaps:
            self.placer.expire(now_ns)
        for chain in self._chains.values():
            if chain.waiting:
                self._emit_keyed(chain, chain.expire(now_ns))

    def held_due_ns(self) -> int | None:
        """When the first lifecycle copy keyed and held back (its trail) is due on this connection (None: none)."""
        dues = [d for chain in (*self._chains.values(), *self._ended) if (d := chain.held_due_ns()) is not None]
        return min(dues) if dues else None

    def release_held(self, upto_ns: int) -> None:
        """Emit the lifecycle copies held back that are due by ``upto_ns`` (``ingest.held_order`` calls it across a
        gatherer's connections in due order)."""
        for chain in (*self._chains.values(), *self._ended):
            self._emit_keyed(chain, chain.release_due(upto_ns))
        self._ended = [chain for chain in self._ended if chain.held_due_ns() is not None]

    def flush(self, now_ns: int) -> None:
        """Shutting down: emit everything that waits (snapshots placed now, lifecycle keyed backward, then the copies
        held for their trail: a gatherer releases those across its connections in due order first, held_order)."""
        self.placer.close(now_ns)
        for sid in list(self._chains):
            self._end_lifecycle_sid(sid)
        self.release_held(2**63 - 1)

    # -- gaps ----------------------------------------------------------------------------------
    def _gap(self, kind: str, sid: int, expected: int, received: int, recv_ns: int, from_ns: int) -> None:
        """Report that seqs ``expected .. received-1`` of ``sid`` never arrived; resnapshot an orderbook sid."""
        self.stats.gaps += 1
        group_channel = self._sid_group.get(sid)
        if group_channel is not None:
            channel, markets = group_channel[1], list(group_channel[0].markets)
        elif sid == self.lifecycle_sid:
            channel, markets = LIFECYCLE, ALL
        else:
            channel, markets = "", []
        if self._log is not None:
            self._log.warning(
                "seq_gap", conn=self.conn_id, sid=sid, expected=expected, received=received, channel=channel, kind=kind
            )
        report = GapReport(
            kind=kind,
            conn=self.conn_id,
            from_ns=from_ns or recv_ns,
            to_ns=recv_ns,
            channel=channel,
            markets=markets,
            sid=sid,
            expected=expected,
            received=received,
        )
        self._emit_gap(report, recv_ns)
        if channel == ORDERBOOK:
            self.request_snapshot(sid)

    def _emit_gap(self, report: GapReport, recv_ns: int) -> None:
        self.stats.by_kind["gap"] += 1
        market = report.markets[0] if report.markets else "*"
        frame = RawFrame(
            venue=VENUE,
            gatherer=self.gatherer,
            conn=self.conn_id,
            sid=report.sid,
            seq=report.received,
            recv_ns=recv_ns,
            kind="gap",
            market=market,
            event_key=f"g:{self.gatherer}:{self.conn_id}:{report.kind}:{report.sid}:{report.from_ns}",
            payload=encode_gap(report),
        )
        self._emit(market, encode_raw(frame))

    def _maybe_close_down_window(self, now_ns: int) -> None:
        """Once every subscription of a reconnected connection is confirmed, report the window it was down."""
        if not self._down_from_ns or not self.is_connected:
            return
        if any(g.pending for g in self.groups) or (self.lifecycle and self.lifecycle_sid is None):
            return
        from_ns, self._down_from_ns = self._down_from_ns, 0
        to_ns = max(now_ns, from_ns)
        if self.markets:
            self._emit_gap(GapReport(kind="down", conn=self.conn_id, from_ns=from_ns, to_ns=to_ns,
                                     markets=list(self.markets)), to_ns)  # fmt: skip
        if self.lifecycle:
            self._emit_gap(
                GapReport(kind="down", conn=self.conn_id, from_ns=from_ns, to_ns=to_ns, channel=LIFECYCLE, markets=ALL),
                to_ns,
            )

    def _reject(self, data: bytes, reason: str) -> None:
        self.stats.dead += 1
        self._dead(data, reason)

    # -- control messages -----------------------------------------------------------------------
    def _control(self, env: _Env, data: bytes, recv_ns: int) -> None:
        t = env.type
        if t == "subscribed":
            try:
                sub = _subscribed.decode(env.msg)
            except msgspec.DecodeError as exc:
                self._reject(data, f"subscribed: {exc}")
                return
            cmd = self._pending.get(env.id or 0)
            if cmd is None:
                return  # a reply from before a reconnect
            if cmd.group is None:  # the lifecycle subscription
                self._pending.pop(env.id or 0, None)
                self.lifecycle_sid = sub.sid
                if self._lc_resub_from_ns:
                    from_ns, self._lc_resub_from_ns = self._lc_resub_from_ns, 0
                    report = GapReport(kind="resubscribe", conn=self.conn_id, from_ns=from_ns, to_ns=recv_ns,
                                       channel=LIFECYCLE, markets=ALL)  # fmt: skip
                    self._emit_gap(report, recv_ns)
                self._maybe_close_down_window(recv_ns)
                return
            group = cmd.group
            group.sids[sub.channel] = sub.sid
            self._sid_group[sub.sid] = (group, sub.channel)
            if len(group.sids) >= len(self.filtered):
                group.pending = False
                self._pending.pop(env.id or 0, None)
                resub = self._resub.pop(id(group), None)
                if resub is not None:
                    from_ns, markets = resub
                    report = GapReport(kind="resubscribe", conn=self.conn_id, from_ns=from_ns, to_ns=recv_ns,
                                       channel="", markets=list(markets))  # fmt: skip
                    self._emit_gap(report, recv_ns)
                self._maybe_close_down_window(recv_ns)
        elif t in ("ok", "unsubscribed"):
            if env.id:
                if env.id in self._probes:
                    self._probe_reply(env, recv_ns)
                self._pending.pop(env.id, None)
        elif t == "error":
            try:
                err = _error.decode(env.msg)
            except msgspec.DecodeError:
                err = _Error()
            self._command_error(env, err, data, recv_ns)
        else:
            self._reject(data, f"unknown message type {t!r}")

    def _command_error(self, env: _Env, err: _Error, data: bytes, recv_ns: int) -> None:
        self.stats.errors += 1
        if env.id and env.id in self._probes:  # a probe the venue refused still proves commands are answered
            self._probes.pop(env.id)
            if not self._probes and self.probe_state == "waiting":
                self.probe_state = "quiet"
        cmd = self._pending.pop(env.id, None) if env.id else None
        if self._log is not None:
            self._log.warning(
                "venue_error",
                conn=self.conn_id,
                code=err.code,
                text=err.msg,
                sid=env.sid,
                action=cmd.action if cmd else "",
            )
        if err.code == ERR_MARKET_LIMIT and cmd is not None and cmd.group is not None:
            group = cmd.group
            if cmd.action == "subscribe":
                if group in self.groups:
                    self.groups.remove(group)
                half = max(1, len(group.markets) // 2)
                self.sub_cap = min(self.sub_cap, half)
                markets = [m for m in group.markets if m in self.markets]
                if len(group.markets) <= 1:
                    self._reject(data, "market limit error for a single market: not subscribed")
                    report = GapReport(kind="rejected", conn=self.conn_id, from_ns=recv_ns, to_ns=recv_ns,
                                       markets=list(group.markets))  # fmt: skip
                    self._emit_gap(report, recv_ns)
                    return
                self._subscribe_new(markets)
            elif cmd.action == "add_markets":
                # This group is full at the venue: take the markets back from every sid and subscribe them anew.
                self.sub_cap = min(self.sub_cap, max(1, len(group.markets) - len(cmd.markets)))
                back = set(cmd.markets)
                group.markets = [m for m in group.markets if m not in back]
                for channel, sid in group.sids.items():
                    if channel != cmd.channel:
                        params = {"sid": sid, "action": "delete_markets", "market_tickers": cmd.markets}
                        self._send("update_subscription", params, None)
                # Other channels' add commands for the same markets may still be in flight; drop them.
                for cid, other in list(self._pending.items()):
                    if other.action == "add_markets" and other.group is group and other.markets is cmd.markets:
                        del self._pending[cid]
                self._subscribe_new([m for m in cmd.markets if m in self.markets])
            return
        if err.code in TERMINAL_ERRORS and env.sid is not None:
            entry = self._sid_group.get(env.sid)
            if entry is not None:
                self._resubscribe(entry[0], recv_ns)
            elif env.sid == self.lifecycle_sid and self.lifecycle:
                self._end_lifecycle_sid(env.sid)
                self.lifecycle_sid = None
                self._lc_resub_from_ns = self._seq_ns.get(env.sid, 0) or recv_ns
                self._subscribe_lifecycle()


def _check_ticker(market: str) -> None:
    if len(market) > MAX_TICKER:
        raise ValueError(f"market_ticker: {len(market)} characters (at most {MAX_TICKER})")
