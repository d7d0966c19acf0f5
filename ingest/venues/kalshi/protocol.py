"""Client side of the Kalshi WebSocket protocol for ONE connection, sans I/O (no asyncio, no socket, no clock).

The I/O layer (:mod:`ingest.connection`) calls :meth:`KalshiSession.connected` after each (re)connect, feeds
every received message with :meth:`KalshiSession.receive` (bytes + receive time), and sends what
:meth:`KalshiSession.data_to_send` returns (``outbox``, the same list for the session's life, is non-empty while
commands wait: the hot path tests it instead of calling ``has_output``). The session:

- subscribes its markets in groups of at most ``sub_cap`` markets (one ``subscribe`` per group with the
  filtered channels, hence one sid per channel per group); error 26 halves the group and retries, and lowers
  ``sub_cap`` for later groups; markets added later go to a group with room (``update_subscription
  add_markets``, one command per sid) or a new group; removed ones are deleted from their group's sids;
- subscribes the unfiltered ``market_lifecycle_v2`` channel when ``lifecycle`` is set (one connection per
  gatherer does, so lifecycle events are recorded once per gatherer);
- checks ``seq`` per sid: a gap is counted, reported as a RawFrame ``kind="gap"`` and, on an orderbook sid,
  answered with ``get_snapshot`` for that sid only; a repeated seq (<= last) is counted and not recorded;
- decodes each market-data body (``schemas.kalshi`` structs, Decimal-exact, numbers or strings), derives the
  event key (:mod:`ingest.keys`), and emits one encoded RawFrame per market message, payload = verbatim bytes;
  a frame that is a JSON array of messages is split; anything unparseable goes to ``dead`` (topic ``dlq``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ingest.keys import EventKeyer
from schemas.codec import SCHEMA_VERSION
from schemas.kalshi import KIND_BY_TYPE, LifecycleMsg, SnapshotMsg, TradeMsg
from schemas.raw import RawFrame, encode_raw

__all__ = ["LIFECYCLE", "TERMINAL_ERRORS", "Group", "KalshiSession", "SessionStats"]

VENUE = "kalshi"
LIFECYCLE = "market_lifecycle_v2"
ORDERBOOK = "orderbook_delta"
ERR_MARKET_LIMIT = 26
TERMINAL_ERRORS = frozenset({10, 25})  # the sid is dead: subscribe its markets again


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


class _Error(msgspec.Struct):
    code: int = 0
    msg: str = ""


_env = msgspec.json.Decoder(_Env)
_many = msgspec.json.Decoder(list[msgspec.Raw])
_subscribed = msgspec.json.Decoder(_Subscribed)
_error = msgspec.json.Decoder(_Error)
_trade = msgspec.json.Decoder(TradeMsg, strict=False)
_snapshot = msgspec.json.Decoder(SnapshotMsg, strict=False)
_lifecycle = msgspec.json.Decoder(LifecycleMsg, strict=False)
_event_level = msgspec.json.Decoder(_EventLevel)
_cmd = msgspec.json.Encoder()
# A RawFrame is a msgpack array (array_like) of these fields in this order: the hot path encodes the tuple directly.
_FRAME_FIELDS = (
    "v", "venue", "gatherer", "conn", "sid", "seq", "recv_ns", "kind", "market", "event_key", "payload", "venue_ms",
    "after_keys",
)  # fmt: skip
_NO_AFTER: list[str] = []
if (
    tuple(f.name for f in msgspec.structs.fields(RawFrame)) != _FRAME_FIELDS
    or not RawFrame.__struct_config__.array_like
):
    raise ImportError("schemas.raw.RawFrame changed: update the tuple encoding in KalshiSession.receive")
_frame = msgspec.msgpack.Encoder(decimal_format="string")


class SessionStats:
    """Plain counters (the I/O layer exports them to Prometheus)."""

    __slots__ = ("by_kind", "dead", "duplicates", "errors", "gaps", "resnapshots", "resubscribes")

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = dict.fromkeys(("snapshot", "delta", "trade", "ticker", "lifecycle", "gap"), 0)
        self.gaps = 0
        self.duplicates = 0
        self.dead = 0
        self.errors = 0
        self.resnapshots = 0
        self.resubscribes = 0


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
    ) -> None:
        self.gatherer = gatherer
        self.conn_id = conn_id
        self.filtered = [c for c in channels if c != LIFECYCLE]
        self.lifecycle = lifecycle and LIFECYCLE in channels
        self.sub_cap = max(1, sub_cap)
        self.keyer = keyer
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
        self.last_data_ns = 0
        self.first_data_ns = 0
        self.data_messages = 0

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

    def _subscribe_new(self, markets: list[str]) -> None:
        if not self.filtered:
            return
        cap = self.sub_cap
        for i in range(0, len(markets), cap):
            self._subscribe_group(Group(markets[i : i + cap]))

    def connected(self) -> None:
        """A new WebSocket is open: forget the old sids and seqs, subscribe everything again."""
        self.is_connected = True
        self.groups = []
        self._pending.clear()
        self._sid_group.clear()
        self._seq.clear()
        if self.lifecycle:
            self._send("subscribe", {"channels": [LIFECYCLE]}, _Cmd("lifecycle", None, []))
        self._subscribe_new(list(self.markets))

    def disconnected(self) -> None:
        self.is_connected = False
        self.outbox.clear()

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
            # orderbook add goes LAST: its snapshot starts our coverage of these markets (and is what `verify`
            # counts from), so by then the venue (which handles a connection's commands in order) must already
            # send their trades and tickers. Orderbook first lost the trades/tickers published between the adds.
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

    def _resubscribe(self, group: Group) -> None:
        """Drop ``group``'s sids (unsubscribe the live ones) and subscribe its markets afresh."""
        self.stats.resubscribes += 1
        if group in self.groups:
            self.groups.remove(group)
        live = [sid for sid in group.sids.values() if sid in self._sid_group]
        for sid in group.sids.values():
            self._sid_group.pop(sid, None)
            self._seq.pop(sid, None)
        if live:
            self._send("unsubscribe", {"sids": live}, None)
        markets = [m for m in group.markets if m in self.markets]
        if markets:
            self._subscribe_new(markets)

    # -- input ---------------------------------------------------------------------------------
    def receive(self, data: bytes, recv_ns: int) -> None:
        """Handle one WebSocket message (a JSON object, or a JSON array of them)."""
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
            self._control(env, data)
            return
        body = env.msg
        try:
            if kind == "delta":
                market, key = self.keyer.delta_body(body, recv_ns)
            elif kind == "ticker":
                market, key = self.keyer.ticker_body(body, recv_ns)
            elif kind == "trade":
                t = _trade.decode(body)
                market = t.market_ticker
                key = "t:" + t.trade_id
            elif kind == "snapshot":
                s = _snapshot.decode(body)
                market = s.market_ticker
                key = self.keyer.snapshot(s)
            elif env.type != LIFECYCLE:  # event_lifecycle / event_fee_update: no market, no event_type
                market = _event_level.decode(body).event_ticker
                key = self.keyer.body("l", market, body, recv_ns)
            else:
                lc = _lifecycle.decode(body)
                market = lc.market_ticker or lc.event_ticker
                if not market:
                    raise msgspec.ValidationError("lifecycle message without market_ticker or event_ticker")
                key = self.keyer.body("l", market, body, recv_ns)
                if self._on_lifecycle is not None:
                    self._on_lifecycle(market, lc, recv_ns)
        except (msgspec.DecodeError, ValueError) as exc:
            self._reject(data, f"{env.type}: {exc}")
            if env.seq is not None and env.sid is not None and env.seq > self._seq.get(env.sid, 0):
                self._seq[env.sid] = env.seq  # the message arrived: its seq is no gap
            return
        sid = env.sid
        seq = env.seq
        if seq is not None and sid is not None:
            last = self._seq.get(sid)
            if last is not None and seq != last + 1:
                if seq <= last:
                    self.stats.duplicates += 1
                    return
                self._gap(sid, last + 1, seq, market, recv_ns)
            self._seq[sid] = seq
        if not self.first_data_ns:
            self.first_data_ns = recv_ns
        self.last_data_ns = recv_ns
        self.data_messages += 1
        self.stats.by_kind[kind] += 1
        # encode_raw(RawFrame(venue=VENUE, ..., payload=data)), byte for byte, without the struct (_FRAME_FIELDS)
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
                    kind,
                    market,
                    key,
                    data,
                    None,
                    _NO_AFTER,
                )
            ),
        )

    def _gap(self, sid: int, expected: int, received: int, market: str, recv_ns: int) -> None:
        self.stats.gaps += 1
        self.stats.by_kind["gap"] += 1
        group_channel = self._sid_group.get(sid)
        channel = group_channel[1] if group_channel else ""
        if self._log is not None:
            self._log.warning(
                "seq_gap", conn=self.conn_id, sid=sid, expected=expected, received=received, channel=channel
            )
        payload = _cmd.encode({"sid": sid, "expected": expected, "received": received, "conn": self.conn_id})
        frame = RawFrame(
            venue=VENUE,
            gatherer=self.gatherer,
            conn=self.conn_id,
            sid=sid,
            seq=received,
            recv_ns=recv_ns,
            kind="gap",
            market=market,
            event_key=f"g:{self.gatherer}:{self.conn_id}:{sid}:{expected}",
            payload=payload,
        )
        self._emit(market, encode_raw(frame))
        if channel == ORDERBOOK:
            self.request_snapshot(sid)

    def _reject(self, data: bytes, reason: str) -> None:
        self.stats.dead += 1
        self._dead(data, reason)

    def _control(self, env: _Env, data: bytes) -> None:
        t = env.type
        if t == "subscribed":
            try:
                sub = _subscribed.decode(env.msg)
            except msgspec.DecodeError as exc:
                self._reject(data, f"subscribed: {exc}")
                return
            cmd = self._pending.get(env.id or 0)
            if cmd is None or cmd.group is None:
                return  # the lifecycle subscription (or a reply from before a reconnect)
            group = cmd.group
            group.sids[sub.channel] = sub.sid
            self._sid_group[sub.sid] = (group, sub.channel)
            if len(group.sids) >= len(self.filtered):
                group.pending = False
                self._pending.pop(env.id or 0, None)
        elif t in ("ok", "unsubscribed"):
            if env.id:
                self._pending.pop(env.id, None)
        elif t == "error":
            try:
                err = _error.decode(env.msg)
            except msgspec.DecodeError:
                err = _Error()
            self._command_error(env, err, data)
        else:
            self._reject(data, f"unknown message type {t!r}")

    def _command_error(self, env: _Env, err: _Error, data: bytes) -> None:
        self.stats.errors += 1
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
                self._resubscribe(entry[0])
            elif self.lifecycle:
                self._send("subscribe", {"channels": [LIFECYCLE]}, _Cmd("lifecycle", None, []))
