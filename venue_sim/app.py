"""In-process emulator: wires market table, books, load generator, truth file, faults and the server.

Usage (tests, demo, benchmarks)::

    sim = VenueSim(SimOptions(markets=100, rate=500.0, seed=1, port=0, auth=False, truth_path="t.truth"))
    await sim.start()            # sim.rest_url, sim.ws_url, sim.port
    sim.faults.drop_next()       # or close_connections / freeze / delay / malformed / refuse_connections
    ticker = sim.create_market(); sim.settle_market(ticker)
    await sim.stop_generating()  # quiesce, flush truth
    await sim.stop()

The generator runs on a tick (``tick_s``): each tick produces the events due at ``rate`` since start,
records them in the truth file, and hands them to every connection in one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import msgspec

from mdpipe.logging import get_logger
from venue_sim.book import Books
from venue_sim.faults import Faults, FaultSpec, parse_faults
from venue_sim.keys import load_public_key
from venue_sim.load import KINDS, Event, Generator
from venue_sim.markets import ST_ACTIVE, MarketTable
from venue_sim.server import ServerSettings, SimServer
from venue_sim.truth import TruthEvent, TruthWriter

__all__ = ["SimOptions", "VenueSim"]

log = get_logger(__name__)


class SimOptions(msgspec.Struct, kw_only=True):
    """Every knob of the emulator (the CLI maps its flags onto these)."""

    markets: int = 100
    rate: float = 500.0  # events per second, aggregate
    seed: int = 1
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    auth: bool = False
    public_key_pem: str = ""  # PEM text of the accepted key (or public_key_path)
    public_key_path: str = ""
    key_id: str = ""  # when set, KALSHI-ACCESS-KEY must equal it
    max_skew_s: float = 300.0  # accepted |now - KALSHI-ACCESS-TIMESTAMP|
    truth_path: str = ""  # "" = no truth file
    sub_cap: int = 0  # max markets per subscription (error 26); 0 = unlimited
    heartbeat_s: float = 10.0  # server ping interval (body "heartbeat")
    pong_timeout_s: float = 20.0  # no pong within this after a ping -> disconnect
    identical_share: float = 0.05  # share of deltas repeating the market's previous delta body exactly
    trade_share: float = 0.05
    ticker_share: float = 0.10
    churn_per_s: float = 0.2  # markets created (and one settled) per second; 0 = none
    send_buffer_bytes: int = 16 << 20  # per-connection unsent bytes before error 25
    tick_s: float = 0.005
    base_ts_ms: int = 0  # virtual clock start for ts_ms; 0 = wall clock at start
    faults: str = ""  # schedule, see venue_sim.faults
    duration_s: float = 0.0  # stop generating after this long; 0 = never (CLI uses it)


class VenueSim:
    """A running emulated venue."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        base = options.base_ts_ms or int(time.time() * 1000)
        self.markets = MarketTable(options.markets, options.seed, base)
        self.books = Books(options.seed)
        self.generator = Generator(
            self.markets,
            self.books,
            seed=options.seed,
            rate=options.rate,
            identical_share=options.identical_share,
            churn_per_s=options.churn_per_s,
            trade_share=options.trade_share,
            ticker_share=options.ticker_share,
        )
        public_key = None
        if options.auth:
            pem = options.public_key_pem or (
                Path(options.public_key_path).read_text() if options.public_key_path else ""
            )
            if not pem:
                raise ValueError("auth is on but no public key was given (public_key_pem / public_key_path)")
            public_key = load_public_key(pem)
        settings = ServerSettings(
            host=options.host,
            port=options.port,
            auth=options.auth,
            public_key=public_key,
            key_id=options.key_id,
            max_skew_s=options.max_skew_s,
            sub_cap=options.sub_cap,
            heartbeat_s=options.heartbeat_s,
            pong_timeout_s=options.pong_timeout_s,
            send_buffer_bytes=options.send_buffer_bytes,
        )
        self.server = SimServer(settings, self.markets, self.books, self._admin)
        self.faults = Faults(self.server)
        self.schedule: list[FaultSpec] = parse_faults(options.faults) if options.faults else []
        self.truth: TruthWriter | None = None
        self.generating = False
        self.started_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.tick_lag_max_s = 0.0
        self.skipped = 0  # event slots skipped because the loop fell behind

    # -- addresses -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.port

    @property
    def rest_url(self) -> str:
        return f"http://{self.options.host}:{self.port}/trade-api/v2"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.options.host}:{self.port}/trade-api/ws/v2"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.options.truth_path:
            self.truth = TruthWriter(self.options.truth_path)
        await self.server.start()
        self.started_at = time.monotonic()
        self.generating = True
        self._tasks.append(asyncio.create_task(self._run(), name="venue-sim-generator"))
        if self.schedule:
            self._tasks.append(asyncio.create_task(self._run_schedule(), name="venue-sim-faults"))
        log.info("sim_started", port=self.port, markets=len(self.markets), rate=self.options.rate)

    async def stop_generating(self) -> None:
        """Quiesce: no more events; the truth file is flushed and closed (connections stay open)."""
        self.generating = False
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.truth is not None and not self.truth.closed:
            self.truth.close()
            log.info("sim_quiesced", events=self.generator.next_id - 1)

    async def stop(self) -> None:
        await self.stop_generating()
        await self.server.close()

    async def wait_done(self) -> None:
        """Return when generation ended (duration reached or stop_generating called)."""
        while self.generating:
            await asyncio.sleep(0.05)

    # -- events --------------------------------------------------------------------------------
    def _publish(self, events: list[Event]) -> None:
        if not events:
            return
        truth = self.truth
        if truth is not None and not truth.closed:
            gen_ns = time.time_ns()
            ticker = self.markets.ticker
            for ev in events:
                truth.write(TruthEvent(ev[0], KINDS[ev[1]], ticker(ev[2]), ev[3], gen_ns, ev[4].encode()))  # type: ignore[arg-type]
        self.server.broadcast(events)

    async def _run(self) -> None:
        opts = self.options
        gen = self.generator
        loop = asyncio.get_running_loop()
        started = t0 = loop.time()
        produced = 0
        rate = gen.rate
        while True:
            now = loop.time()
            if opts.duration_s and now - started >= opts.duration_s:
                break
            if gen.rate != rate:  # rate changed (set_rate): restart the schedule from here
                t0, produced, rate = now, 0, gen.rate
            max_batch = max(1, int(rate * 0.25))
            due = int((now - t0) * rate) - produced
            if due > max_batch:  # fell behind: skip the backlog rather than burst, keep ts_ms near wall time
                self.tick_lag_max_s = max(self.tick_lag_max_s, due / rate)
                gen.skip(due - max_batch)
                self.skipped += due - max_batch
                produced += due - max_batch
                due = max_batch
            if due > 0:
                events = gen.generate(due)
                produced += due
                self._publish(events)
            if self.truth is not None:
                self.truth.maybe_flush()
            await asyncio.sleep(opts.tick_s)
        self.generating = False
        if self.truth is not None:
            self.truth.close()
        log.info("sim_duration_reached", events=gen.next_id - 1)

    async def _run_schedule(self) -> None:
        for fault in self.schedule:
            delay = self.started_at + fault.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.faults.apply(fault)

    def create_market(self) -> str:
        """List a new market now (lifecycle ``created`` + ``activated``); returns its ticker."""
        if not self.generating:
            raise RuntimeError("the venue stopped generating")
        out: list[Event] = []
        m = self.generator.create_market(out)
        self._publish(out)
        return self.markets.ticker(m)

    def settle_market(self, ticker: str, result: str | None = None) -> bool:
        """Determine and settle ``ticker`` now; False if it was already settled."""
        if not self.generating:
            raise RuntimeError("the venue stopped generating")
        m = self.markets.index(ticker)
        if m is None:
            raise KeyError(ticker)
        out: list[Event] = []
        done = self.generator.settle_market(m, out, result)
        self._publish(out)
        return done

    def set_rate(self, rate: float) -> None:
        self.generator.set_rate(rate)

    def stats(self) -> dict[str, Any]:
        gen = self.generator
        return {
            "generating": self.generating,
            "events_generated": gen.next_id - 1,
            "identical_deltas": gen.identical,
            "markets": len(self.markets),
            "active_markets": self.markets.status.count(ST_ACTIVE),
            "books_materialised": len(self.books),
            "rate": gen.rate,
            "uptime_s": round(time.monotonic() - self.started_at, 3) if self.started_at else 0.0,
            "tick_lag_max_s": round(self.tick_lag_max_s, 3),
            "skipped_slots": self.skipped,
            "truth_events": self.truth.count if self.truth is not None else 0,
            "faults": self.faults.history,
            **self.server.stats(),
        }

    # -- admin API (HTTP) ----------------------------------------------------------------------
    async def _admin(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        if path == "/_sim/stats":
            return 200, self.stats()
        if method != "POST":
            return 404, {"error": f"no route {method} {path}"}
        if path == "/_sim/faults":
            if "spec" in payload:
                faults = parse_faults(str(payload["spec"]))
                for fault in faults:
                    if fault.at_s > 0:
                        asyncio.get_running_loop().call_later(fault.at_s, self.faults.apply, fault)
                    else:
                        self.faults.apply(fault)
                return 200, {"ok": True, "scheduled": len(faults)}
            if "fault" in payload and "kind" not in payload:
                payload = {("kind" if k == "fault" else k): v for k, v in payload.items()}
            try:
                fault = msgspec.convert(payload, FaultSpec)
            except msgspec.ValidationError as exc:
                raise ValueError(str(exc)) from None
            return 200, {"ok": True, "connections": self.faults.apply(fault)}
        if path == "/_sim/stop-generating":
            await self.stop_generating()
            return 200, {"ok": True, "events_generated": self.generator.next_id - 1}
        if path == "/_sim/markets":
            if not self.generating:
                return 409, {"error": "the venue stopped generating"}
            return 200, {"ticker": self.create_market()}
        if path == "/_sim/settle":
            ticker = str(payload.get("ticker", ""))
            if self.markets.index(ticker) is None:
                return 404, {"error": f"unknown market {ticker}"}
            if not self.generating:
                return 409, {"error": "the venue stopped generating"}
            return 200, {"ok": self.settle_market(ticker, payload.get("result"))}
        if path == "/_sim/rate":
            self.set_rate(float(payload["rate"]))
            return 200, {"ok": True}
        return 404, {"error": f"no route {method} {path}"}
