"""Load model: turns a seeded random stream into venue events (deltas, trades, tickers, lifecycle).

No clock and no I/O: event times come from a virtual clock (``base_ts_ms`` + events / rate), so one seed,
market count, rate schedule and options always yield the same events in the same order. Activity is skewed
(log-uniform over market rank: a few hot markets, a long quiet tail). Each event's JSON body is encoded
once here; connections only wrap it in their own envelope.

An event is a plain tuple ``(id, ch, market_index, ts_ms, body, body_yes)``: ``ch`` is a ``wire.CH_*``
channel number (``CH_EVENT_LIFECYCLE``/``CH_EVENT_FEE`` are event-level messages on the lifecycle channel; their
``market_index`` is the event's first market) and ``body_yes`` is the body for ``use_yes_price`` subscribers
when it differs (NO-side deltas), else None.

The real-venue behaviours of :mod:`venue_sim.lifecycle` run on a timeline of due actions keyed by venue time,
checked once per event slot. The generator also leaves *facts* for the venue's record in :attr:`Generator.facts`
(markets going live or not, messages made invalid on purpose, book checkpoints); the I/O layer drains them.
A book checkpoint at venue time ``T`` is taken inside the generation loop just before the first event with
``ts_ms > T`` is produced, so it holds exactly the deltas with ``ts_ms <= T``.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from array import array

from venue_sim.book import LEVEL_SPAN, SLOTS, Books
from venue_sim.lifecycle import BAD_NUMBER_VARIANTS, FLAP_AGAIN_MS, FLAP_BACK_MS, Behaviours
from venue_sim.markets import (
    PREFIX,
    ST_ACTIVE,
    ST_DETERMINED,
    ST_FINALIZED,
    ST_INACTIVE,
    ST_INITIALIZED,
    MarketTable,
)
from venue_sim.wire import WIRE

__all__ = ["KINDS", "LIFECYCLE_ACTIONS", "WIRE_TYPES", "BookFact", "Event", "Generator"]

Event = tuple[int, int, int, int, str, str | None]
# The truth format (venue_sim.wire), copied into globals for the hot path: channel numbers, spellings, bodies.
CH_ORDERBOOK, CH_TICKER, CH_TRADE, CH_LIFECYCLE = WIRE.CH_ORDERBOOK, WIRE.CH_TICKER, WIRE.CH_TRADE, WIRE.CH_LIFECYCLE
CH_EVENT_LIFECYCLE, CH_EVENT_FEE = WIRE.CH_EVENT_LIFECYCLE, WIRE.CH_EVENT_FEE
PRICE: tuple[str, ...] = WIRE.PRICE
rfc3339 = WIRE.rfc3339
delta_head, delta_body, trade_body, ticker_body = WIRE.delta_head, WIRE.delta_body, WIRE.trade_body, WIRE.ticker_body
created_body, determined_body, settled_body = WIRE.created_body, WIRE.determined_body, WIRE.settled_body
activated_body, deactivated_body, metadata_body = WIRE.activated_body, WIRE.deactivated_body, WIRE.metadata_body
unknown_body, fee_body, event_lifecycle_body = WIRE.unknown_body, WIRE.fee_body, WIRE.event_lifecycle_body
bad_delta_body = WIRE.bad_delta_body
UNKNOWN_EVENT_TYPES: tuple[str, ...] = WIRE.UNKNOWN_EVENT_TYPES
# Truth kind and the envelope type to record (when not the kind's usual one), by channel number.
KINDS: tuple[str, ...] = WIRE.KINDS
WIRE_TYPES: tuple[str, ...] = WIRE.WIRE_TYPES
HEAD_CACHE = 100_000
LIFECYCLE_ACTIONS: tuple[str, ...] = (
    "deactivate",
    "activate",
    "metadata",
    "metadata_legacy",
    "unknown",
    "fee_set",
    "fee_clear",
)
CREATED_PICK_SHARE = 0.01  # share of picks aimed at markets created while running (they trade too)
NEVER = float("inf")

# Timeline actions (heap entries are (due_ms, order, action, market)).
A_ACTIVATE_CREATED, A_DEACTIVATE, A_ACTIVATE, A_PAUSE, A_METADATA, A_UNKNOWN, A_FEE = range(7)

# A book checkpoint: (T, after_id, markets with at least one delta, their 20 slots each, concatenated).
BookFact = tuple[int, int, array, array]


class Generator:
    """Seeded event source over a :class:`MarketTable` and its :class:`Books`."""

    def __init__(
        self,
        markets: MarketTable,
        books: Books,
        seed: int,
        rate: float,
        identical_share: float = 0.05,
        churn_per_s: float = 0.0,
        trade_share: float = 0.05,
        ticker_share: float = 0.10,
        behaviours: Behaviours | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.markets = markets
        self.books = books
        self.rng = random.Random(seed)
        self.identical_share = identical_share
        self.trade_share = trade_share
        self.ticker_share = ticker_share
        self.churn_per_s = churn_per_s
        self.behaviours = b = behaviours or Behaviours()
        self.next_id = 1
        self.emitted = 0
        self._rate = rate
        self._t0_count = 0
        self._t0_ms = float(markets.base_ts_ms)
        self._since_churn = 0
        self.identical = 0  # identical-body deltas emitted so far
        self._rfc_secs = -1
        self._heads: dict[int, str] = {}  # delta body prefix per (hot) market
        self._rfc_text = ""
        books.grow(len(markets))
        # Data events go to the lively markets 0 .. live_count - 1 (the rest are dormant) and to created ones.
        self.live_count = len(markets) - round(len(markets) * b.dormant_share)
        self._created: list[int] = []
        self._last_event = (len(markets) - 1) // 10  # highest event number listed (markets.event_ticker)
        # Record facts, drained by the I/O layer: ("live", market, event id, live, event_type) |
        # ("bad", event id, reason) | ("book", BookFact).
        self.facts: list[tuple[object, ...]] = []
        self._has_delta = bytearray(len(markets))
        self._delta_markets = array("i")
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "created",
                "activated_created",
                "paused",
                "resumed",
                "flaps",
                "metadata_updates",
                "metadata_legacy",
                "unknown_lifecycle",
                "event_lifecycle",
                "fee_updates",
                "bad_numbers",
                "checkpoints",
            ),
            0,
        )
        # Timeline of due actions; _due = venue time of the earliest one (or of the next checkpoint boundary).
        self._timeline: list[tuple[int, int, int, int]] = []
        self._order = 0
        self._ckpt_ms = b.checkpoint_ms
        self._ckpt_next = markets.base_ts_ms + b.checkpoint_ms if b.checkpoint_ms else 0  # next boundary T
        self._due: float = NEVER
        self._pause_pool: list[int] = []
        self._meta_pool: list[int] = []
        self._meta_variant: dict[int, int] = {}
        self._fee_pool: list[int] = []
        self._fee_on: dict[int, bool] = {}
        self._protected: set[int] = set()  # pool markets churn never settles (their cycles keep repeating)
        base = markets.base_ts_ms
        if b.pause_per_s > 0:
            self._pause_pool = self._pool(b.pause_markets)
            self._schedule(base + self._interval(b.pause_per_s), A_PAUSE, 0)
        if b.metadata_per_s > 0:
            self._meta_pool = self._pool(4)
            self._schedule(base + self._interval(b.metadata_per_s), A_METADATA, 0)
        if b.unknown_per_s > 0:
            self._schedule(base + self._interval(b.unknown_per_s), A_UNKNOWN, 0)
        if b.fee_update_per_s > 0:
            self._fee_pool = sorted({m // 10 for m in self._pool(3)})
            self._schedule(base + self._interval(b.fee_update_per_s), A_FEE, 0)
        self._protected = set(self._pause_pool) | set(self._meta_pool)
        self._set_due()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate for future events (part of the reproducible schedule)."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._t0_ms = self._vclock()
        self._t0_count = self.emitted
        self._rate = rate

    def _vclock(self) -> float:
        return self._t0_ms + (self.emitted - self._t0_count) * (1000.0 / self._rate)

    def skip(self, n: int) -> None:
        """Let ``n`` event slots pass without events (the venue fell behind): keeps ts_ms near wall time.

        Consumes no randomness, so the sequence of event bodies stays that of the seed."""
        self.emitted += n

    def now_ms(self) -> int:
        """Virtual time of the next event."""
        return int(self._vclock())

    def _event(self, out: list[Event], ch: int, m: int, ts: int, body: str, body_yes: str | None = None) -> None:
        out.append((self.next_id, ch, m, ts, body, body_yes))
        self.next_id += 1
        self.emitted += 1

    # -- timeline ----------------------------------------------------------------------------------
    def _pool(self, size: int) -> list[int]:
        """``size`` distinct lively markets (log-uniform like the traffic, so most of them trade)."""
        n1 = self.live_count + 1
        out: list[int] = []
        for _ in range(50 * size):
            if len(out) >= min(size, self.live_count):
                break
            m = int(n1 ** self.rng.random()) - 1
            if m not in out:
                out.append(m)
        return out

    def _interval(self, per_s: float) -> int:
        """Milliseconds to the next occurrence of something happening ``per_s`` times a second (jittered)."""
        return max(1, int(1000.0 / per_s * (0.5 + self.rng.random())))

    def _schedule(self, due_ms: int, action: int, m: int) -> None:
        self._order += 1
        heapq.heappush(self._timeline, (due_ms, self._order, action, m))
        if due_ms < self._due:
            self._due = due_ms

    def _set_due(self) -> None:
        due: float = self._timeline[0][0] if self._timeline else NEVER
        if self._ckpt_ms and self._ckpt_next + 1 < due:
            due = self._ckpt_next + 1
        self._due = due

    def _catch_up(self, out: list[Event]) -> int:
        """Before an event made outside :meth:`generate` (admin, faults): run what is due by now; returns now."""
        ts = self.now_ms()
        if ts >= self._due:
            self._run_due(out, ts)
        return ts

    def _run_due(self, out: list[Event], ts: int) -> None:
        """Everything due at or before venue time ``ts``: the checkpoint first (no event with ts > T before it)."""
        if self._ckpt_ms and ts > self._ckpt_next:
            period = self._ckpt_ms
            last = self._ckpt_next + (ts - 1 - self._ckpt_next) // period * period  # latest boundary < ts
            self.checkpoint(last)
            self._ckpt_next = last + period
        timeline = self._timeline
        while timeline and timeline[0][0] <= ts:
            _, _, action, m = heapq.heappop(timeline)
            self._act(out, action, m, ts)
        self._set_due()

    def _act(self, out: list[Event], action: int, m: int, ts: int) -> None:
        b = self.behaviours
        rnd = self.rng.random
        status = self.markets.status
        if action == A_ACTIVATE_CREATED:
            if status[m] == ST_INITIALIZED:
                self._set_live(out, m, ts, ST_ACTIVE, activated_body(self.markets.ticker(m)), "activated")
                self.counts["activated_created"] += 1
        elif action == A_DEACTIVATE:
            if status[m] == ST_ACTIVE:
                self._set_live(out, m, ts, ST_INACTIVE, deactivated_body(self.markets.ticker(m)), "deactivated")
                self.counts["paused"] += 1
        elif action == A_ACTIVATE:
            if status[m] == ST_INACTIVE:
                self._set_live(out, m, ts, ST_ACTIVE, activated_body(self.markets.ticker(m)), "activated")
                self.counts["resumed"] += 1
        elif action == A_PAUSE:
            pool = self._pause_pool
            # Geometric weights (1/2, 1/4, ...): the first market cycles often, the last one minutes apart.
            m = pool[min(int(-math.log2(1.0 - rnd())), len(pool) - 1)]
            pause = max(1, int(b.pause_ms * (0.5 + rnd())))
            if status[m] == ST_ACTIVE:
                self._act(out, A_DEACTIVATE, m, ts)
                if rnd() < b.flap_share:  # back at once, paused again 50 ms after the first pause
                    self.counts["flaps"] += 1
                    self._schedule(ts + FLAP_BACK_MS, A_ACTIVATE, m)
                    self._schedule(ts + FLAP_AGAIN_MS, A_DEACTIVATE, m)
                    self._schedule(ts + FLAP_AGAIN_MS + pause, A_ACTIVATE, m)
                else:
                    self._schedule(ts + pause, A_ACTIVATE, m)
            self._schedule(ts + self._interval(b.pause_per_s), A_PAUSE, 0)
        elif action == A_METADATA:
            pool = self._meta_pool
            k = int(rnd() * len(pool))
            m = pool[k]
            variant = self._meta_variant[m] = 1 - self._meta_variant.get(m, 1)  # A, B, A, ...
            legacy = k % 2 == 1
            self._event(out, CH_LIFECYCLE, m, ts, metadata_body(self.markets.ticker(m), variant, legacy))
            self.counts["metadata_updates"] += 1
            self.counts["metadata_legacy"] += legacy
            self._schedule(ts + self._interval(b.metadata_per_s), A_METADATA, 0)
        elif action == A_UNKNOWN:
            m = self._pool(1)[0] if self.live_count else 0
            kind = UNKNOWN_EVENT_TYPES[self.counts["unknown_lifecycle"] % len(UNKNOWN_EVENT_TYPES)]
            self._event(out, CH_LIFECYCLE, m, ts, unknown_body(self.markets.ticker(m), kind, ts))
            self.counts["unknown_lifecycle"] += 1
            self._schedule(ts + self._interval(b.unknown_per_s), A_UNKNOWN, 0)
        elif action == A_FEE:
            e = self._fee_pool[int(rnd() * len(self._fee_pool))]
            on = self._fee_on[e] = not self._fee_on.get(e, False)  # set, clear, set, ...
            self._event(out, CH_EVENT_FEE, e * 10, ts, fee_body(f"{PREFIX}{e}", on))
            self.counts["fee_updates"] += 1
            self._schedule(ts + self._interval(b.fee_update_per_s), A_FEE, 0)

    def lifecycle_now(self, out: list[Event], action: str, m: int) -> bool:
        """One lifecycle message for market ``m`` now, on demand (tests, admin API). ``action``: one of
        :data:`LIFECYCLE_ACTIONS`. False when the market's status does not allow it (e.g. activating an active
        market). ``fee_set``/``fee_clear`` act on ``m``'s event."""
        ts = self._catch_up(out)
        status = self.markets.status[m]
        ticker = self.markets.ticker(m)
        if action == "deactivate":
            if status != ST_ACTIVE:
                return False
            self._act(out, A_DEACTIVATE, m, ts)
        elif action == "activate":
            if status not in (ST_INACTIVE, ST_INITIALIZED):
                return False
            self._act(out, A_ACTIVATE if status == ST_INACTIVE else A_ACTIVATE_CREATED, m, ts)
        elif action in ("metadata", "metadata_legacy"):
            variant = self._meta_variant[m] = 1 - self._meta_variant.get(m, 1)
            legacy = action == "metadata_legacy"
            self._event(out, CH_LIFECYCLE, m, ts, metadata_body(ticker, variant, legacy))
            self.counts["metadata_updates"] += 1
            self.counts["metadata_legacy"] += legacy
        elif action == "unknown":
            kind = UNKNOWN_EVENT_TYPES[self.counts["unknown_lifecycle"] % len(UNKNOWN_EVENT_TYPES)]
            self._event(out, CH_LIFECYCLE, m, ts, unknown_body(ticker, kind, ts))
            self.counts["unknown_lifecycle"] += 1
        elif action in ("fee_set", "fee_clear"):
            e = m // 10
            on = self._fee_on[e] = action == "fee_set"
            self._event(out, CH_EVENT_FEE, e * 10, ts, fee_body(f"{PREFIX}{e}", on))
            self.counts["fee_updates"] += 1
        else:
            raise ValueError(f"lifecycle action must be one of {', '.join(LIFECYCLE_ACTIONS)}, got {action!r}")
        return True

    def _set_live(self, out: list[Event], m: int, ts: int, status: int, body: str, event_type: str) -> None:
        self.markets.set_status(m, status, ts)
        self._event(out, CH_LIFECYCLE, m, ts, body)
        self.facts.append(("live", m, self.next_id - 1, status == ST_ACTIVE, event_type))

    # -- book checkpoints --------------------------------------------------------------------------
    def checkpoint(self, at_ms: int) -> None:
        """Copy the book of every market that had a delta, as of now, as the checkpoint at venue time ``at_ms``
        (a fact ``("book", (T, after_id, markets, slots))``; rendering is left to the I/O layer)."""
        levels = self.books.levels
        slots = array("i")
        for m in self._delta_markets:
            base = m * SLOTS
            slots += levels[base : base + SLOTS]
        self.facts.append(("book", (at_ms, self.next_id - 1, array("i", self._delta_markets), slots)))
        self.counts["checkpoints"] += 1

    def final_checkpoint(self) -> None:
        """The checkpoint taken when generation stops: every delta generated so far (T = the venue clock now,
        which no generated event's ts_ms exceeds). Taken whatever ``checkpoint_ms`` (0 = only this one)."""
        self.checkpoint(self.now_ms())

    # -- lifecycle ---------------------------------------------------------------------------------
    def create_market(self, out: list[Event]) -> int:
        """List a new market: ``created`` (status initialized), then ``activated`` at once or, with
        ``activate_after_ms``, that much later. An ``event_lifecycle`` comes first for a new event."""
        ts = self._catch_up(out)
        m = self.markets.add(ts)
        self.books.grow(len(self.markets))
        self._has_delta.append(0)
        t = self.markets.ticker(m)
        event_no = m // 10
        if event_no > self._last_event:
            self._last_event = event_no
            if self.behaviours.event_lifecycle:
                body = event_lifecycle_body(self.markets.event_ticker(m), event_no, PREFIX[:-2])
                self._event(out, CH_EVENT_LIFECYCLE, m, ts, body)
                self.counts["event_lifecycle"] += 1
        close_s = self.markets.close_ms(m) // 1000
        body = created_body(m, t, self.markets.event_ticker(m), ts // 1000, close_s)
        self._event(out, CH_LIFECYCLE, m, ts, body)
        self.facts.append(("live", m, self.next_id - 1, True, "created"))
        self.counts["created"] += 1
        self._created.append(m)
        delay = self.behaviours.activate_after_ms
        if delay > 0:
            self._schedule(ts + delay, A_ACTIVATE_CREATED, m)
        else:
            self._set_live(out, m, ts, ST_ACTIVE, activated_body(t), "activated")
        return m

    def settle_market(self, m: int, out: list[Event], result: str | None = None) -> bool:
        """Determine and settle market ``m`` (no-op, False, if already determined/settled)."""
        if self.markets.status[m] in (ST_DETERMINED, ST_FINALIZED):
            return False
        ts = self._catch_up(out)
        result = result or ("yes" if self.rng.random() < 0.5 else "no")
        t = self.markets.ticker(m)
        self.markets.results[m] = result
        self._set_live(out, m, ts, ST_DETERMINED, determined_body(t, result, ts), "determined")
        self._set_live(out, m, ts, ST_FINALIZED, settled_body(t, ts), "settled")
        return True

    def _churn(self, out: list[Event]) -> None:
        self.create_market(out)
        n = len(self.markets)
        for _ in range(8):
            m = self.rng.randrange(n)
            if m >= 10 and self.markets.status[m] == ST_ACTIVE and m not in self._protected:
                self.settle_market(m, out)
                return

    def bad_delta(self, out: list[Event], variant: str = "exp") -> int:
        """An ``orderbook_delta`` of a trading market with an out-of-range number (``variant`` in
        :data:`BAD_NUMBER_VARIANTS`). A venue event with an id (it takes its seq on the wire) that does not
        change the book; a ``("bad", id, reason)`` fact says so. Returns the event id (0 when no market trades)."""
        if variant not in BAD_NUMBER_VARIANTS:
            raise ValueError(f"bad-number variant must be one of {', '.join(BAD_NUMBER_VARIANTS)}, got {variant!r}")
        ts = self._catch_up(out)
        m = self._pick()
        if m < 0:
            m = self.markets.status.find(ST_ACTIVE, 0, max(1, self.live_count))
            if m < 0:
                return 0
        mid = self.books.mid(m)
        head = self._head(m)
        body, reason = bad_delta_body(head, PRICE[mid - 1], variant, ts)
        self._event(out, CH_ORDERBOOK, m, ts, body)
        self.facts.append(("bad", self.next_id - 1, reason))
        self.counts["bad_numbers"] += 1
        return self.next_id - 1

    # -- market data -------------------------------------------------------------------------------
    def _pick(self) -> int:
        """A trading market: log-uniform over the lively markets; with markets created while running, the lowest
        ``CREATED_PICK_SHARE`` of draws (which would mostly hit the hottest market) go to a created one."""
        status = self.markets.status
        n1 = self.live_count + 1
        rnd = self.rng.random
        created = self._created
        if n1 == 1:  # every listed market is dormant
            if not created:
                return -1
            for _ in range(6):
                m = created[int(rnd() * len(created))]
                if status[m] == ST_ACTIVE:
                    return m
            return -1
        for _ in range(6):
            r = rnd()
            if r < CREATED_PICK_SHARE and created:
                m = created[int(r / CREATED_PICK_SHARE * len(created))]
            else:
                m = int(n1**r) - 1
            if status[m] == ST_ACTIVE:
                return m
        return -1

    def generate(self, n: int) -> list[Event]:
        """The next ``n`` (or a few more: a trade brings its ticker) events."""
        out: list[Event] = []
        rnd = self.rng.random
        p_delta = 1.0 - self.trade_share - self.ticker_share
        p_trade = p_delta + self.trade_share
        churn_every = int(self._rate / self.churn_per_s) if self.churn_per_s > 0 else 0
        target = self.emitted + n
        t0_ms, t0_count, step = self._t0_ms, self._t0_count, 1000.0 / self._rate
        due = self._due
        while self.emitted < target:
            ts = int(t0_ms + (self.emitted - t0_count) * step)
            if ts >= due:
                self._run_due(out, ts)
                due = self._due
                continue
            if churn_every:
                self._since_churn += 1
                if self._since_churn >= churn_every:
                    self._since_churn = 0
                    self._churn(out)
                    due = self._due  # creating a market may have scheduled its activation
                    continue
            m = self._pick()
            if m < 0:
                self.emitted += 1  # an idle slot keeps the virtual clock moving
                continue
            r = rnd()
            if r < p_delta:
                self._delta(out, m, ts)
            elif r < p_trade:
                self._trade(out, m, ts)
                self._ticker(out, m, ts)
            else:
                self._ticker(out, m, ts)
        return out

    def _delta(self, out: list[Event], m: int, ts: int) -> None:
        rnd = self.rng.random
        books = self.books
        levels = books.levels
        base = m * SLOTS if books.touched[m] else books.touch(m)
        mid = books.mids[m]
        side_no = 1 if rnd() < 0.5 else 0
        k = int(rnd() * LEVEL_SPAN)
        slot = base + k + LEVEL_SPAN * side_no
        price = (99 - mid - k) if side_no else (mid - 1 - k)
        cur = levels[slot]
        if cur and rnd() < 0.45:
            delta = -cur if rnd() < 0.3 else -(1 + int(rnd() * cur))
        elif rnd() < 0.9:
            delta = 100 * (1 + int(rnd() * 20))
        else:
            delta = 1 + int(rnd() * 5000)
        levels[slot] = cur + delta
        if not self._has_delta[m]:
            self._has_delta[m] = 1
            self._delta_markets.append(m)
        body, body_yes = delta_body(self._heads.get(m) or self._head(m), side_no, price, delta, ts)
        self._event(out, CH_ORDERBOOK, m, ts, body, body_yes)
        # Identical-body twin (same market, side, price, delta and ts_ms): a real venue produces these when two
        # orders change one level by the same amount within the same millisecond, so the twin follows at once.
        if self.identical_share > 0 and rnd() < self.identical_share and (delta > 0 or levels[slot] >= -delta):
            levels[slot] += delta
            self.identical += 1
            self._event(out, CH_ORDERBOOK, m, ts, body, body_yes)

    def _head(self, m: int) -> str:
        """The start of market ``m``'s delta bodies (the truth format's ``delta_head``, cached for hot markets)."""
        head = self._heads.get(m)
        if head is None:
            if len(self._heads) >= HEAD_CACHE:
                self._heads.clear()
            markets = self.markets
            head = delta_head(markets.ticker(m), markets.market_id(m))
            self._heads[m] = head
        return head

    def _trade(self, out: list[Event], m: int, ts: int) -> None:
        rnd = self.rng.random
        books = self.books
        books.touch(m)
        yes_bid, yes_ask, _, _ = books.top(m)
        taker = "yes" if rnd() < 0.5 else "no"
        yes_price = min(max(yes_ask if taker == "yes" else yes_bid, 1), 99)
        count = 100 * (1 + int(rnd() * 10))
        books.last_price[m] = yes_price
        books.volume[m] += count
        books.open_interest[m] += count
        books.last_trade[m] = count
        trade_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        body = trade_body(str(trade_id), self.markets.ticker(m), yes_price, count, taker, ts)
        self._event(out, CH_TRADE, m, ts, body)

    def _ticker(self, out: list[Event], m: int, ts: int) -> None:
        books = self.books
        last = books.last_price[m] if books.touched[m] else books.mid(m)
        secs = ts // 1000
        if secs != self._rfc_secs:
            self._rfc_secs, self._rfc_text = secs, rfc3339(secs * 1000)
        markets = self.markets
        body = ticker_body(
            markets.market_id(m),
            markets.ticker(m),
            books.top(m),
            last,
            books.last_trade[m],
            books.volume[m],
            books.open_interest[m],
            ts,
            self._rfc_text,
        )
        self._event(out, CH_TICKER, m, ts, body)
