"""The emulator's server side of the Kalshi WebSocket protocol for one connection, sans I/O (no asyncio, no clock).

Feed client text with :meth:`ServerSession.receive_text`, venue events with :meth:`ServerSession.deliver`,
and take the frames to send with :meth:`ServerSession.data_to_send`. Keeps one sid counter per connection
(from 1), one ``seq`` per sid shared by snapshots, deltas, trades and lifecycle messages (ticker carries
none), the per-channel market maps, and the error codes of the real API. Event-level messages
(``event_lifecycle``, ``event_fee_update``) travel on the lifecycle sids under their own envelope type.

With a :class:`~venue_sim.recorder.Recorder` the session writes the venue's record of every change of what a
sid delivers, every snapshot and every message a fault kept back (:mod:`venue_sim.record`). The fast delivery
path records nothing: recording happens on commands and on the slow path that faults switch on.
"""

from __future__ import annotations

import json
from array import array
from typing import Any

from venue_sim.book import Books
from venue_sim.load import Event
from venue_sim.markets import MarketTable
from venue_sim.record import ALL_MARKETS, SnapshotSent, Subscribed, Suppressed, Unsubscribed
from venue_sim.recorder import Recorder
from venues.kalshi.emulator.levels import snapshot_json, wire_levels
from venues.kalshi.emulator_wire import CH_LIFECYCLE, CH_ORDERBOOK, CH_TICKER, CHANNELS, TYPES, error_msg

__all__ = [
    "ERR_BAD_ACTION",
    "ERR_BUFFER_OVERFLOW",
    "ERR_INVALID_PARAM",
    "ERR_MARKET_LIMIT",
    "ERR_MARKET_REQUIRED",
    "ERR_ONE_SID",
    "ERR_PARAMS",
    "ERR_UNKNOWN_CHANNEL",
    "ERR_UNKNOWN_CMD",
    "ERR_UNKNOWN_SID",
    "ServerSession",
    "Subscription",
]

ERR_UNPROCESSABLE = 1
ERR_PARAMS = 2
ERR_CHANNELS = 3
ERR_SIDS = 4
ERR_UNKNOWN_CMD = 5
ERR_UNKNOWN_SID = 7
ERR_UNKNOWN_CHANNEL = 8
ERR_INVALID_PARAM = 11
ERR_ONE_SID = 12
ERR_BAD_ACTION = 13
ERR_MARKET_REQUIRED = 14
ERR_ACTION_REQUIRED = 15
ERR_BUFFER_OVERFLOW = 25
ERR_MARKET_LIMIT = 26

CHANNEL_NUMBER = {name: i for i, name in enumerate(CHANNELS)}
N_CHANNELS = len(TYPES)  # real channels plus the event-level pseudo channels of the lifecycle sids
ACTIONS = ("add_markets", "delete_markets", "get_snapshot")


class CommandError(Exception):
    def __init__(self, code: int, text: str, sid: int | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.sid = sid


class Subscription:
    """One sid. ``markets`` is None for an all-markets subscription (ticker/trade unfiltered, lifecycle)."""

    __slots__ = ("channel", "markets", "seq", "sid", "skip_ack", "use_yes_price")

    def __init__(
        self, sid: int, channel: int, markets: array[int] | None, use_yes_price: bool, skip_ack: bool = False
    ) -> None:
        self.sid = sid
        self.channel = channel
        self.markets = markets
        self.seq = 0
        self.use_yes_price = use_yes_price
        self.skip_ack = skip_ack  # skip_ticker_ack: `ok` replies omit the market list


class ServerSession:
    """Protocol state of one WebSocket connection."""

    def __init__(
        self, conn_id: int, markets: MarketTable, books: Books, sub_cap: int = 0, recorder: Recorder | None = None
    ) -> None:
        self.conn_id = conn_id
        self.markets = markets
        self.books = books
        self.sub_cap = sub_cap
        self.recorder = recorder
        self.out: list[str] = []
        self.next_sid = 1
        self.subs: dict[int, Subscription] = {}
        self._by_sid: list[Subscription | None] = [None]
        self._maps: list[array[int] | None] = [None] * N_CHANNELS
        self._extra: list[dict[int, list[int]]] = [{} for _ in range(N_CHANNELS)]
        lifecycle: list[Subscription] = []  # one list: event-level messages go to the lifecycle sids
        self._alls: list[list[Subscription]] = [[], [], [], lifecycle, lifecycle, lifecycle]
        # Faults and flow control (set by the I/O layer or the fault controller).
        self.drop_next = 0
        self.frozen = False
        self.overflowing = False
        self.redeliver_next = 0
        self._slow = False
        self.data_messages = 0  # data messages queued
        self.suppressed = 0  # data messages dropped by faults (seq still advanced)
        self.overflowed_sids = 0
        self.redelivered = 0  # data messages sent a second time with the same seq
        # None: SnapshotSent records are written when the snapshot is queued; a list (hold_reply_records): they wait
        # there for the server, which writes them when their messages reach the socket (take_reply_records)
        self._reply_records: list[SnapshotSent] | None = None

    # -- output --------------------------------------------------------------------------------
    def data_to_send(self) -> list[str]:
        out, self.out = self.out, []
        return out

    def hold_reply_records(self) -> None:
        """Keep each ``SnapshotSent`` until the server takes it with the messages queued so far: a snapshot the
        socket never gets (held by the ``delay`` fault when the venue closes the connection) is then not recorded."""
        if self._reply_records is None:
            self._reply_records = []

    def take_reply_records(self) -> list[SnapshotSent]:
        """The records of the snapshots queued since the last call (with :meth:`hold_reply_records`)."""
        held = self._reply_records
        if not held:
            return []
        self._reply_records = []
        return held

    def update_flags(self) -> None:
        """Recompute the fast-path switch after changing ``drop_next``/``frozen``/``overflowing``."""
        self._slow = bool(self.drop_next or self.frozen or self.overflowing or self.redeliver_next)

    # -- market data ---------------------------------------------------------------------------
    def deliver(self, events: list[Event]) -> None:
        """Queue every event for the sids subscribed to its market and channel."""
        if self._slow:
            self._deliver_slow(events)
            return
        out = self.out
        maps = self._maps
        alls = self._alls
        extra = self._extra
        by_sid = self._by_sid
        n = 0
        for ev in events:
            ch = ev[1]
            m = ev[2]
            arr = maps[ch]
            subs: list[Subscription] = alls[ch]
            if arr is not None and m < len(arr):
                sid = arr[m]
                if sid:
                    sub = by_sid[sid]
                    assert sub is not None
                    subs = [sub, *subs]
                    more = extra[ch].get(m)
                    if more:
                        subs += [by_sid[s] for s in more]  # type: ignore[misc]
            for sub in subs:
                body = ev[5] if (sub.use_yes_price and ev[5] is not None) else ev[4]
                if ch == CH_TICKER:
                    out.append(f'{{"type":"ticker","sid":{sub.sid},"msg":{body}}}')
                else:
                    sub.seq += 1
                    out.append(f'{{"type":"{TYPES[ch]}","sid":{sub.sid},"seq":{sub.seq},"msg":{body}}}')
                n += 1
        self.data_messages += n

    def _targets(self, ch: int, m: int) -> list[Subscription]:
        subs = list(self._alls[ch])
        arr = self._maps[ch]
        if arr is not None and m < len(arr) and arr[m]:
            subs.append(self._by_sid[arr[m]])  # type: ignore[arg-type]
            subs += [self._by_sid[s] for s in self._extra[ch].get(m, ())]  # type: ignore[misc]
        return subs

    def _deliver_slow(self, events: list[Event]) -> None:
        kill: dict[int, int] = {}  # sid -> id of the first event it did not get
        kept: dict[tuple[int, str], list[int]] = {}  # (sid, fault) -> ids suppressed
        rec = self.recorder
        for ev in events:
            ch, m = ev[1], ev[2]
            for sub in self._targets(ch, m):
                if sub.sid in kill:
                    continue
                if self.overflowing:
                    kill[sub.sid] = ev[0]
                    continue
                if ch != CH_TICKER:
                    sub.seq += 1
                if self.frozen:
                    self.suppressed += 1
                    if rec is not None:
                        kept.setdefault((sub.sid, "freeze"), []).append(ev[0])
                    continue
                if self.drop_next and ch != CH_TICKER:
                    self.drop_next -= 1
                    self.suppressed += 1
                    self.update_flags()
                    if rec is not None:
                        kept.setdefault((sub.sid, "drop"), []).append(ev[0])
                    continue
                body = ev[5] if (sub.use_yes_price and ev[5] is not None) else ev[4]
                if ch == CH_TICKER:
                    self.out.append(f'{{"type":"ticker","sid":{sub.sid},"msg":{body}}}')
                else:
                    text = f'{{"type":"{TYPES[ch]}","sid":{sub.sid},"seq":{sub.seq},"msg":{body}}}'
                    self.out.append(text)
                    if self.redeliver_next:  # the same message again, same seq: a re-delivered seq
                        self.out.append(text)
                        self.redeliver_next -= 1
                        self.redelivered += 1
                        self.data_messages += 1
                        self.update_flags()
                self.data_messages += 1
        if rec is not None:
            for (sid, fault), ids in kept.items():
                rec.write(Suppressed(self.conn_id, sid, ids, fault))
        for sid, first_missed in sorted(kill.items()):
            sub = self._remove(sid)
            seq = sub.seq if sub is not None and sub.channel != CH_TICKER else None
            self.overflowed_sids += 1
            self.out.append(error_msg(None, ERR_BUFFER_OVERFLOW, "Subscription buffer overflow", sid=sid, seq=seq))
            if rec is not None and sub is not None:
                rec.write(
                    Unsubscribed(
                        self.conn_id,
                        sid,
                        CHANNELS[sub.channel],
                        [ALL_MARKETS],
                        first_missed - 1,
                        rec.now_ns(),
                        "overflow",
                    )
                )

    def end(self, after_id: int) -> None:
        """The connection is over: record the end of every sid still open (coverage ends after ``after_id``)."""
        rec = self.recorder
        if rec is None:
            return
        now = rec.now_ns()
        for sub in self.subs.values():
            channel = CHANNELS[sub.channel]
            rec.write(Unsubscribed(self.conn_id, sub.sid, channel, [ALL_MARKETS], after_id, now, "closed"))

    def _record_sub(self, sub: Subscription, markets: list[int] | None) -> None:
        rec = self.recorder
        if rec is None:
            return
        names = [ALL_MARKETS] if markets is None else [self.markets.ticker(m) for m in markets]
        rec.write(Subscribed(self.conn_id, sub.sid, CHANNELS[sub.channel], names, rec.position(), rec.now_ns()))

    def _record_unsub(self, sub: Subscription, markets: list[int] | None, reason: str) -> None:
        rec = self.recorder
        if rec is None:
            return
        names = [ALL_MARKETS] if markets is None else [self.markets.ticker(m) for m in markets]
        channel = CHANNELS[sub.channel]
        rec.write(Unsubscribed(self.conn_id, sub.sid, channel, names, rec.position(), rec.now_ns(), reason))

    # -- commands ------------------------------------------------------------------------------
    def receive_text(self, text: str | bytes) -> None:
        """Handle one client command; replies (and snapshots) are queued on ``out``."""
        try:
            obj = json.loads(text)
        except ValueError:
            self.out.append(error_msg(0, ERR_UNPROCESSABLE, "Unable to process message"))
            return
        if not isinstance(obj, dict):
            self.out.append(error_msg(0, ERR_UNPROCESSABLE, "Unable to process message"))
            return
        cmd_id = obj.get("id", 0)
        if not isinstance(cmd_id, int) or isinstance(cmd_id, bool):
            cmd_id = 0
        cmd = obj.get("cmd")
        params = obj.get("params", None if cmd != "list_subscriptions" else {})
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "update_subscription": self._update,
            "list_subscriptions": self._list,
        }.get(cmd if isinstance(cmd, str) else "")
        try:
            if handler is None:
                raise CommandError(ERR_UNKNOWN_CMD, "Unknown command")
            if not isinstance(params, dict):
                raise CommandError(ERR_PARAMS, "Params required")
            handler(cmd_id, params)
        except CommandError as exc:
            self.out.append(error_msg(cmd_id, exc.code, exc.text, exc.sid))

    def _tickers(self, params: dict[str, Any]) -> list[int] | None:
        """Market indexes named by market_ticker/market_tickers (None when neither given). Unknown skipped."""
        one = params.get("market_ticker")
        many = params.get("market_tickers")
        if one is None and many is None:
            return None
        names: list[str] = []
        if one is not None:
            if not isinstance(one, str):
                raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: market_ticker")
            names.append(one)
        if many is not None:
            if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
                raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: market_tickers")
            names.extend(many)
        seen: set[int] = set()
        out: list[int] = []
        for name in names:
            i = self.markets.index(name)
            if i is not None and i not in seen:
                seen.add(i)
                out.append(i)
        return out

    def _subscribe(self, cmd_id: int, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if channels is None or channels == []:
            raise CommandError(ERR_CHANNELS, "Channels required")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: channels")
        for name in channels:
            if name not in CHANNEL_NUMBER:
                raise CommandError(ERR_UNKNOWN_CHANNEL, "Unknown channel name")
        tickers = self._tickers(params)
        if "orderbook_delta" in channels and not tickers:
            raise CommandError(ERR_MARKET_REQUIRED, "Market Ticker required")
        if tickers and self.sub_cap and len(tickers) > self.sub_cap:
            raise CommandError(ERR_MARKET_LIMIT, "Subscription market limit exceeded")
        yes_price = params.get("use_yes_price", False) is True
        skip_ack = params.get("skip_ticker_ack", False) is True
        for name in dict.fromkeys(channels):
            ch = CHANNEL_NUMBER[name]
            filtered = tickers is not None and ch != CH_LIFECYCLE  # lifecycle cannot be filtered
            sid = self.next_sid
            self.next_sid += 1
            sub = Subscription(sid, ch, array("i") if filtered else None, yes_price, skip_ack)
            self.subs[sid] = sub
            self._by_sid.append(sub)
            if filtered:
                self._add_markets(sub, tickers or [])
            else:
                self._alls[ch].append(sub)
            self._record_sub(sub, list(sub.markets) if sub.markets is not None else None)
            self.out.append(f'{{"id":{cmd_id},"type":"subscribed","msg":{{"channel":"{name}","sid":{sid}}}}}')
            if ch == CH_ORDERBOOK and sub.markets is not None:
                self._snapshots(sub, list(sub.markets), None)

    def _map(self, ch: int) -> array[int]:
        arr = self._maps[ch]
        need = len(self.markets)
        if arr is None:
            arr = self._maps[ch] = array("i", bytes(4 * need))
        elif len(arr) < need:
            arr.frombytes(bytes(4 * (need - len(arr))))
        return arr

    def _has(self, sub: Subscription, m: int) -> bool:
        arr = self._maps[sub.channel]
        if arr is None or m >= len(arr):
            return False
        return arr[m] == sub.sid or sub.sid in self._extra[sub.channel].get(m, ())

    def _add_markets(self, sub: Subscription, idx: list[int]) -> list[int]:
        assert sub.markets is not None
        arr = self._map(sub.channel)
        extra = self._extra[sub.channel]
        added = []
        for m in idx:
            if self._has(sub, m):
                continue
            if arr[m]:
                extra.setdefault(m, []).append(sub.sid)
            else:
                arr[m] = sub.sid
            sub.markets.append(m)
            added.append(m)
        return added

    def _unmap(self, sub: Subscription, m: int) -> None:
        arr = self._maps[sub.channel]
        extra = self._extra[sub.channel]
        assert arr is not None
        if arr[m] == sub.sid:
            more = extra.get(m)
            if more:
                arr[m] = more.pop()
                if not more:
                    del extra[m]
            else:
                arr[m] = 0
        else:
            more = extra.get(m)
            if more and sub.sid in more:
                more.remove(sub.sid)
                if not more:
                    del extra[m]

    def _remove(self, sid: int) -> Subscription | None:
        sub = self.subs.pop(sid, None)
        if sub is None:
            return None
        self._by_sid[sid] = None
        if sub.markets is None:
            self._alls[sub.channel].remove(sub)
        else:
            for m in sub.markets:
                self._unmap(sub, m)
        return sub

    def _snapshots(self, sub: Subscription, idx: list[int], cmd_id: int | None) -> None:
        head = '{"type":"orderbook_snapshot",' if cmd_id is None else f'{{"type":"orderbook_snapshot","id":{cmd_id},'
        markets = self.markets
        books = self.books
        rec = self.recorder
        if rec is None:
            for m in idx:
                sub.seq += 1
                yes, no = wire_levels(books.mid(m), books.slots(m), sub.use_yes_price)
                body = snapshot_json(markets.ticker(m), markets.market_id(m), yes, no)
                self.out.append(f'{head}"sid":{sub.sid},"seq":{sub.seq},"msg":{body}}}')
            return
        after_id = rec.position()
        yes_price = sub.use_yes_price
        for m in idx:
            sub.seq += 1
            ticker = markets.ticker(m)
            yes, no = wire_levels(books.mid(m), books.slots(m), yes_price)
            body = snapshot_json(ticker, markets.market_id(m), yes, no)
            self.out.append(f'{head}"sid":{sub.sid},"seq":{sub.seq},"msg":{body}}}')
            record = SnapshotSent(self.conn_id, sub.sid, ticker, after_id, yes, no, yes_price)
            if self._reply_records is None:
                rec.write(record)
            else:
                self._reply_records.append(record)

    def _unsubscribe(self, cmd_id: int, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if sids is None:
            raise CommandError(ERR_SIDS, "Subscription IDs required")
        if not isinstance(sids, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sids):
            raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: sids")
        for sid in sids:
            sub = self._remove(sid)
            if sub is None:
                self.out.append(error_msg(cmd_id, ERR_UNKNOWN_SID, "Unknown subscription ID", sid=sid))
            else:
                self._record_unsub(sub, None, "unsubscribe")
                self.out.append(f'{{"id":{cmd_id},"sid":{sid},"seq":{sub.seq},"type":"unsubscribed"}}')

    def _update(self, cmd_id: int, params: dict[str, Any]) -> None:
        sid = params.get("sid")
        sids = params.get("sids")
        if sids is not None:
            if not isinstance(sids, list) or len(sids) != 1 or sid is not None:
                raise CommandError(ERR_ONE_SID, "Exactly one subscription ID is required")
            sid = sids[0]
        if sid is None:
            raise CommandError(ERR_ONE_SID, "Exactly one subscription ID is required")
        if not isinstance(sid, int) or isinstance(sid, bool):
            raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: sid")
        sub = self.subs.get(sid)
        if sub is None:
            raise CommandError(ERR_UNKNOWN_SID, "Unknown subscription ID", sid=sid)
        action = params.get("action")
        if action is None:
            raise CommandError(ERR_ACTION_REQUIRED, "Action required", sid=sid)
        if action not in ACTIONS:
            raise CommandError(ERR_BAD_ACTION, "Unsupported action", sid=sid)
        tickers = self._tickers(params)
        if sub.markets is None:
            raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: subscription is not filtered by market", sid=sid)
        if action == "get_snapshot":
            if sub.channel != CH_ORDERBOOK:
                raise CommandError(ERR_INVALID_PARAM, "Invalid parameter: no snapshots on this channel", sid=sid)
            wanted = list(sub.markets) if not tickers else [m for m in tickers if self._has(sub, m)]
            self._snapshots(sub, wanted, cmd_id)
            return
        if not tickers:
            raise CommandError(ERR_MARKET_REQUIRED, "Market Ticker required", sid=sid)
        if action == "add_markets":
            new = [m for m in tickers if not self._has(sub, m)]
            if self.sub_cap and len(sub.markets) + len(new) > self.sub_cap:
                raise CommandError(ERR_MARKET_LIMIT, "Subscription market limit exceeded", sid=sid)
            added = self._add_markets(sub, new)
            if added:
                self._record_sub(sub, added)
            self._ok(cmd_id, sub)
            if sub.channel == CH_ORDERBOOK:
                self._snapshots(sub, added, None)
        else:
            gone = {m for m in tickers if self._has(sub, m)}
            for m in gone:
                self._unmap(sub, m)
            if gone:
                self._record_unsub(sub, [m for m in sub.markets if m in gone], "delete_markets")
            sub.markets = array("i", (m for m in sub.markets if m not in gone))
            self._ok(cmd_id, sub)

    def _ok(self, cmd_id: int, sub: Subscription) -> None:
        assert sub.markets is not None
        if sub.skip_ack:
            self.out.append(f'{{"id":{cmd_id},"sid":{sub.sid},"seq":{sub.seq},"type":"ok","msg":{{}}}}')
            return
        names = ",".join(f'"{self.markets.ticker(m)}"' for m in sub.markets)
        self.out.append(
            f'{{"id":{cmd_id},"sid":{sub.sid},"seq":{sub.seq},"type":"ok","msg":{{"market_tickers":[{names}]}}}}'
        )

    def _list(self, cmd_id: int, params: dict[str, Any]) -> None:
        items = ",".join(f'{{"channel":"{CHANNELS[s.channel]}","sid":{s.sid}}}' for s in self.subs.values())
        self.out.append(f'{{"id":{cmd_id},"type":"ok","msg":[{items}]}}')
