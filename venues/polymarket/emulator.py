"""The emulator's Polymarket profile: the ``market`` channel served from the emulator's ground truth, sans I/O.

The emulator (:mod:`venue_sim`) generates one stream of venue events per run (:mod:`venue_sim.load`: two bid ladders
deltas, trades, tickers, lifecycle, each with a hidden id) over books of two bid ladders per market
(:mod:`venue_sim.book`). This profile turns that same truth into what Polymarket would send, deterministically (a
verifier replays it to know what was expected):

- market ``i`` (ticker ``T``) is a condition ``0x<blake2b-256(T)>`` with two tokens, YES and NO (big decimal ids
  derived from ``T``, as the venue's are 256-bit integers);
- books: the YES token's bids are the market's YES ladder and its asks the NO ladder at ``1 - p``; the NO token's
  bids are the NO ladder and its asks the YES ladder at ``1 - p`` (the mirror the venue shows [doc example]). So the
  YES token, normalised (:mod:`venues.polymarket.normalise`), IS the emulator's book, and the NO token its mirror;
- a delta ``(side, price, d)`` -> one ``price_change`` with two entries, the level's NEW size on both tokens (mirrored
  side and price) and each token's best bid/ask after it;
- a trade -> ``last_trade_price`` on both tokens (the NO token's at ``no_price``, the other side), then a ``book`` of
  each token (the venue sends one "when there is a trade that affects the book" [doc]);
- tickers and lifecycle messages have no ``market`` channel counterpart without custom features: none are sent;
- prices and sizes are spelled as Polymarket does (``"0.43"``, ``"200"``, ``"12.5"``), timestamps as ms strings.

:class:`ServerSession` is one connection's protocol: ``PING`` -> ``PONG``; the ``type: market`` frame and
``operation`` frames (re)subscribe assets and answer each newly subscribed asset with a ``book`` (``initial_dump``;
an asset already subscribed is ignored); messages go to a connection when any of their assets is subscribed
(both-token ``price_change`` messages whole [guess]). Faults, as :mod:`venue_sim.faults` names them: ``drop``
(the next N data messages are not sent: without sequence numbers only the books' best bid/ask can reveal it),
``redeliver`` (sent twice), ``malformed`` (a frame that is not JSON), ``badnumber`` (a ``price_change`` with an
out-of-range price, a venue message that changes no book), ``freeze`` (nothing sent, PINGs still answered), and the
I/O layer's ``close``/``refuse``/``delay``. The record: ``suppressed_ids`` (events a fault kept back) and
``subscribed`` (asset, position = last event id when it became covered); with a recorder the session also writes
the venue record (:mod:`venue_sim.record`) as the native sessions do, one ``sid`` (1, channel ``market``) per
connection whose markets are asset ids: ``Subscribed`` per command that added assets, ``Unsubscribed`` (reason
``unsubscribe``; ``["*"]``, ``closed`` at the end), ``Suppressed`` per delivered batch (``drop``, ``freeze``,
``overflow``). :func:`emulator_profile` is what :meth:`venues.polymarket.venue.Polymarket.emulator` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from hashlib import blake2b
from typing import Literal, NamedTuple

import msgspec

from venue_sim.book import Books
from venue_sim.load import Event
from venue_sim.markets import ST_ACTIVE, ST_INACTIVE, ST_INITIALIZED, MarketTable
from venue_sim.record import ALL_MARKETS, Subscribed, Suppressed, Unsubscribed
from venue_sim.recorder import Recorder
from venues.interface import EmulatorProfile
from venues.polymarket.numbers import PRICE, check, norm

__all__ = ["GAMMA_KEYSET_PATH", "WS_PATH", "Out", "Profile", "ServerSession", "emulator_profile", "gamma_keyset_page"]

WS_PATH = "/ws/market"  # the path of wire.WS_URL
GAMMA_KEYSET_PATH = "/markets/keyset"  # Gamma's keyset listing (venues.polymarket.discovery)
CHANNEL = "market"
SID = 1  # the market channel has no subscription ids: the record names the connection's one subscription 1

CH_ORDERBOOK, CH_TRADE = 0, 2  # venue_sim.wire channel numbers of the events the profile translates
_json = msgspec.json.Encoder()


class _Delta(msgspec.Struct):
    price_dollars: Decimal
    delta_fp: Decimal
    side: Literal["yes", "no"]


class _Trade(msgspec.Struct):
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_side: str = ""
    taker_outcome_side: str = ""


_delta = msgspec.json.Decoder(_Delta)
_trade = msgspec.json.Decoder(_Trade)


class Out(NamedTuple):
    """One market-channel message: the event it comes from (0: none, e.g. a book), its assets, its bytes."""

    event_id: int
    assets: tuple[str, ...]
    data: bytes


def _px(cents: int) -> str:
    return norm(Decimal(cents).scaleb(-2))


def _sz(hundredths: int) -> str:
    return norm(Decimal(hundredths).scaleb(-2))


class Profile:
    """Translates the emulator's events into market-channel messages, keeping a mirror of its books."""

    def __init__(self, seed: int, ticker: Callable[[int], str]) -> None:
        self.books = Books(seed)  # same seed -> same initial books as the generator's
        self.ticker = ticker
        self._tokens: dict[int, tuple[str, str, str]] = {}
        self._by_asset: dict[str, tuple[int, bool]] = {}
        self.clock_ms = 0  # venue time of the newest translated event
        self._batch: tuple[int, int, list[Out]] = (0, 0, [])
        self.bad = 0  # emulator events with an invalid body, sent as an invalid price_change

    def batch(self, events: list[Event]) -> list[Out]:
        """The messages of a batch of generator events, translated once however many connections ask."""
        if not events:
            return []
        first, last, outs = self._batch
        if (events[0][0], events[-1][0]) != (first, last):
            outs = [o for ev in events for o in self.translate(ev[0], ev[1], ev[2], ev[3], ev[4])]
            self._batch = (events[0][0], events[-1][0], outs)
        return outs

    def ids(self, m: int) -> tuple[str, str, str]:
        """(condition id, YES token, NO token) of market ``m``."""
        ids = self._tokens.get(m)
        if ids is None:
            t = self.ticker(m).encode()
            condition = "0x" + blake2b(t, digest_size=32).hexdigest()
            yes = str(int.from_bytes(blake2b(t + b"/yes", digest_size=32).digest(), "big"))
            no = str(int.from_bytes(blake2b(t + b"/no", digest_size=32).digest(), "big"))
            ids = self._tokens[m] = (condition, yes, no)
            self._by_asset[yes] = (m, True)
            self._by_asset[no] = (m, False)
        return ids

    def asset(self, token: str) -> tuple[int, bool] | None:
        """(market, is YES) of a token this profile has named."""
        return self._by_asset.get(token)

    def _ladders(self, m: int) -> tuple[dict[int, int], dict[int, int]]:
        self.books.grow(m + 1)
        view = self.books.peek(m)
        return view.yes, view.no

    def _top(self, m: int, yes_token: bool) -> tuple[str, str]:
        yes, no = self._ladders(m)
        bids, other = (yes, no) if yes_token else (no, yes)
        return _px(max(bids) if bids else 0), _px(100 - max(other) if other else 100)

    def book(self, m: int, yes_token: bool, ts_ms: int) -> Out:
        """The ``book`` of one token now."""
        condition, yes_id, no_id = self.ids(m)
        yes, no = self._ladders(m)
        bids, other = (yes, no) if yes_token else (no, yes)
        body = {
            "event_type": "book", "asset_id": yes_id if yes_token else no_id, "market": condition,
            "bids": [{"price": _px(p), "size": _sz(s)} for p, s in sorted(bids.items())],
            "asks": [{"price": _px(100 - p), "size": _sz(s)} for p, s in sorted(other.items(), reverse=True)],
            "timestamp": str(ts_ms), "hash": "", "tick_size": "0.01",
        }  # fmt: skip
        body["hash"] = blake2b(_json.encode(body), digest_size=20).hexdigest()
        return Out(0, (str(body["asset_id"]),), _json.encode(body))

    def translate(self, event_id: int, ch: int, m: int, ts_ms: int, body: str | bytes) -> list[Out]:
        """The messages of one emulator event (its books change here exactly as the generator changed its own).

        A delta whose body is invalid on purpose (the ``badnumber`` fault) becomes :meth:`bad_change`."""
        self.clock_ms = max(self.clock_ms, ts_ms)
        if ch == CH_ORDERBOOK:
            try:
                d = _delta.decode(body)
                check(d.price_dollars, "price_dollars", PRICE)
                check(d.delta_fp, "delta_fp", (Decimal(-(10**15)), Decimal(10**15)))
                cents = int(d.price_dollars * 100)
                delta = int(d.delta_fp * 100)
            except (msgspec.DecodeError, ValueError):
                self.bad += 1
                return [self.bad_change(event_id, m, ts_ms)]
            self.books.grow(m + 1)
            self.books.apply(m, d.side, cents, delta)
            yes, no = self._ladders(m)
            size = _sz((yes if d.side == "yes" else no).get(cents, 0))
            condition, yes_id, no_id = self.ids(m)
            own, mirror = (yes_id, no_id) if d.side == "yes" else (no_id, yes_id)
            entries = []
            for asset, side, price in ((own, "BUY", cents), (mirror, "SELL", 100 - cents)):
                best_bid, best_ask = self._top(m, asset == yes_id)
                entries.append({"asset_id": asset, "price": _px(price), "size": size, "side": side,
                                "hash": "", "best_bid": best_bid, "best_ask": best_ask})  # fmt: skip
            msg = {"market": condition, "price_changes": entries, "timestamp": str(ts_ms), "event_type": "price_change"}
            return [Out(event_id, (yes_id, no_id), _json.encode(msg))]
        if ch == CH_TRADE:
            t = _trade.decode(body)
            condition, yes_id, no_id = self.ids(m)
            taker_yes = (t.taker_outcome_side or t.taker_side) == "yes"
            out = []
            for asset, price, buy in (
                (yes_id, t.yes_price_dollars, taker_yes),
                (no_id, t.no_price_dollars, not taker_yes),
            ):
                msg = {"event_type": "last_trade_price", "asset_id": asset, "market": condition, "price": norm(price),
                       "size": norm(t.count_fp), "side": "BUY" if buy else "SELL", "fee_rate_bps": "0",
                       "timestamp": str(ts_ms)}  # fmt: skip
                out.append(Out(event_id, (asset,), _json.encode(msg)))
            out.extend(self.book(m, yes_token, ts_ms) for yes_token in (True, False))
            return out
        return []

    def bad_change(self, event_id: int, m: int, ts_ms: int) -> Out:
        """A ``price_change`` of market ``m``'s YES token with an out-of-range price (changes no book)."""
        condition, yes_id, no_id = self.ids(m)
        entry = {"asset_id": yes_id, "price": "1E+1000000", "size": "1", "side": "BUY", "hash": ""}
        msg = {"market": condition, "price_changes": [entry], "timestamp": str(ts_ms), "event_type": "price_change"}
        return Out(event_id, (yes_id, no_id), _json.encode(msg))


def gamma_keyset_page(profile: Profile, table: MarketTable, after_cursor: str, limit: int) -> bytes:
    """Body of the emulator's Gamma ``GET /markets/keyset?closed=false&limit=&after_cursor=``: open markets (not
    closed, determined or settled) in index order; ``next_cursor`` is the next index as text, absent on the last
    page (:mod:`venues.polymarket.discovery` walks it). Every open market is ``active``; one the emulator paused
    (deactivated) or has not activated yet is not ``acceptingOrders`` [guess: Gamma's ``active`` is the listing's
    open flag, a trading halt shows in ``acceptingOrders``]: a collector keeps holding a paused market's book, so it
    does not miss the changes right after the market trades again."""
    start = int(after_cursor) if after_cursor.isdigit() else 0
    indexes, nxt = table.page((ST_INITIALIZED, ST_INACTIVE, ST_ACTIVE), start, max(1, limit))
    markets = []
    for i in indexes:
        condition, yes_id, no_id = profile.ids(i)
        status = table.status[i]
        markets.append({
            "id": str(i + 1), "conditionId": condition, "question": f"{table.ticker(i)}?", "slug": table.ticker(i),
            "outcomes": '["Yes", "No"]', "clobTokenIds": _json.encode([yes_id, no_id]).decode(),
            "active": True, "closed": False, "archived": False, "enableOrderBook": True,
            "acceptingOrders": status == ST_ACTIVE, "orderPriceMinTickSize": 0.01, "negRisk": False,
        })  # fmt: skip
    page: dict[str, object] = {"markets": markets}
    if nxt != -1:
        page["next_cursor"] = str(nxt)
    return _json.encode(page)


class _Frame(msgspec.Struct):
    type: str = ""
    operation: str = ""
    assets_ids: list[str] = []


_frame = msgspec.json.Decoder(_Frame)


class ServerSession:
    """One connection of the emulated market channel (see module docstring).

    The session duck type :class:`venues.interface.EmulatorProfile` names, so :class:`venue_sim.server.SimServer` can
    host it:
    ``receive_text``, ``deliver(events)`` (the generator's events; the shared :class:`Profile` translates each
    batch once for all connections), ``data_to_send() -> list[str]``, the fault fields ``drop_next``,
    ``redeliver_next``, ``frozen``, ``overflowing`` with ``update_flags()``, and ``end``/``redelivered``."""

    def __init__(
        self, profile: Profile, conn_id: int, *, max_assets: int = 500, recorder: Recorder | None = None
    ) -> None:
        self.profile = profile
        self.recorder = recorder
        self.conn_id = conn_id
        self.max_assets = max_assets
        self.assets: set[str] = set()
        self.out: list[str] = []
        self.position = 0  # id of the last event handed to this connection
        self.subscribed: list[tuple[str, int]] = []  # (asset, position when it became covered)
        self.suppressed_ids: list[int] = []  # events a fault kept from this connection
        self.rejected = 0
        self.drop_next = 0
        self.redeliver_next = 0
        self.frozen = False
        self.overflowing = False
        self.redelivered = 0
        self.data_messages = 0

    @property
    def suppressed(self) -> int:
        return len(self.suppressed_ids)

    def data_to_send(self) -> list[str]:
        out, self.out = self.out, []
        return out

    def update_flags(self) -> None:
        """Nothing to precompute (kept for the server's fault controller)."""

    def end(self, after_id: int) -> None:
        self.position = max(self.position, after_id)
        rec = self.recorder
        if rec is not None and self.assets:
            rec.write(Unsubscribed(self.conn_id, SID, CHANNEL, [ALL_MARKETS], after_id, rec.now_ns(), "closed"))

    def receive_text(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if raw.strip() == b"PING":
            self.out.append("PONG")
            return
        try:
            f = _frame.decode(raw)
        except msgspec.DecodeError:
            self.rejected += 1  # the venue documents no error message: nothing is answered [guess]
            return
        rec = self.recorder
        if f.type.lower() == "market" or f.operation == "subscribe":
            added: list[str] = []
            for asset in f.assets_ids:
                known = self.profile.asset(asset)
                if known is None or asset in self.assets or len(self.assets) >= self.max_assets:
                    self.rejected += 1  # unknown, duplicate or over the cap: ignored [guess]
                    continue
                self.assets.add(asset)
                added.append(asset)
                self.subscribed.append((asset, self.position))
                if not self.frozen:
                    self.out.append(self.profile.book(known[0], known[1], self.profile.clock_ms).data.decode())
            if rec is not None and added:
                rec.write(Subscribed(self.conn_id, SID, CHANNEL, added, rec.position(), rec.now_ns()))
        elif f.operation == "unsubscribe":
            removed = [a for a in dict.fromkeys(f.assets_ids) if a in self.assets]
            self.assets.difference_update(removed)
            if rec is not None and removed:
                rec.write(
                    Unsubscribed(self.conn_id, SID, CHANNEL, removed, rec.position(), rec.now_ns(), "unsubscribe")
                )
        else:
            self.rejected += 1

    def deliver(self, events: list[Event]) -> None:
        """Queue the market-channel messages of the generator's ``events`` for this connection's assets."""
        self.deliver_outs(self.profile.batch(events))

    def deliver_outs(self, outs: list[Out]) -> None:
        kept: dict[str, list[int]] = {}  # fault -> ids of events it kept from this connection (for the record)
        for out in outs:
            if out.event_id:
                self.position = max(self.position, out.event_id)
            if not any(a in self.assets for a in out.assets):
                continue
            if self.frozen or self.overflowing or (self.drop_next and out.event_id):
                fault = "freeze" if self.frozen else "overflow" if self.overflowing else "drop"
                if self.drop_next and not self.frozen:
                    self.drop_next -= 1
                if out.event_id:
                    self.suppressed_ids.append(out.event_id)
                    ids = kept.setdefault(fault, [])
                    if not ids or ids[-1] != out.event_id:  # a trade's two messages are one event
                        ids.append(out.event_id)
                continue
            text = out.data.decode()
            self.out.append(text)
            self.data_messages += 1
            if self.redeliver_next and out.event_id:
                self.redeliver_next -= 1
                self.redelivered += 1
                self.out.append(text)
        if kept and self.recorder is not None:
            for fault, ids in kept.items():
                self.recorder.write(Suppressed(self.conn_id, SID, ids, fault))


def emulator_profile(
    seed: int, table: MarketTable, *, sub_cap: int = 0, recorder: Recorder | None = None
) -> EmulatorProfile:
    """The emulator's Polymarket protocol over ``table``: one :class:`Profile` shared by every connection (each
    batch is translated once), sessions capped at ``sub_cap`` assets (0: the venue's 500), the Gamma keyset route."""
    from venues.polymarket.wire import MAX_ASSETS_PER_CONNECTION

    profile = Profile(seed, table.ticker)
    cap = min(sub_cap or MAX_ASSETS_PER_CONNECTION, MAX_ASSETS_PER_CONNECTION)

    def session(conn_id: int) -> ServerSession:
        return ServerSession(profile, conn_id, max_assets=cap, recorder=recorder)

    def keyset(query: dict[str, str]) -> bytes:
        limit = int(query.get("limit") or 500)  # ValueError -> the server answers 400
        return gamma_keyset_page(profile, table, query.get("after_cursor", ""), limit)

    return EmulatorProfile(WS_PATH, session, {GAMMA_KEYSET_PATH: keyset}, observe=profile.batch)
