"""In-process emulator: wires market table, books, load generator, truth file, faults and the server.

Usage (tests, demo, benchmarks)::

    sim = VenueSim(SimConfig(markets=100, rate=500.0, port=0, auth=False, truth_path="t.truth"), SimOptions())
    await sim.start()            # sim.rest_url, sim.ws_url, sim.port (tls=True: https/wss, sim.ca_file to trust)
    sim.faults.drop_next()       # or close_connections / freeze / delay / malformed / refuse_connections /
                                 # redeliver / bad_number / fail_pages
    ticker = sim.create_market(); sim.settle_market(ticker)
    sim.lifecycle("deactivate", ticker)  # or activate / metadata / metadata_legacy / unknown / fee_set / fee_clear
    await sim.stop_generating()  # quiesce, flush truth
    await sim.stop()

The generator runs on a tick (``tick_s``): each tick produces the events due at ``rate`` since start,
records them in the truth file, and hands them to every connection in one batch (synchronously: no command is
handled between generating a batch and handing it to every connection, which makes record positions exact).

With a truth file the venue also writes its record (:mod:`venue_sim.record`) next to it: markets listed at
start, connection and subscription changes, faults' suppressions, snapshots, bad messages and book checkpoints.
Checkpoint books are copied inside the generator and rendered a chunk per tick; the record is complete when
the venue stops (:meth:`VenueSim.stop`); everything up to the end of generation is flushed when generation
stops.

With ``tls`` the port speaks only TLS: a CA and a server certificate are generated at start-up
(:mod:`venue_sim.tls`) into ``tls_dir`` (default: a new temporary folder), and ``ca_file`` is what clients trust.
``rest_rate`` limits REST requests per client (:mod:`venue_sim.rest_limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from mdpipe.config import SimConfig
from mdpipe.logging import get_logger
from venue_sim.book import SLOTS, Books
from venue_sim.faults import Faults, FaultSpec, parse_faults
from venue_sim.keys import load_public_key
from venue_sim.lifecycle import Behaviours
from venue_sim.load import CH_EVENT_LIFECYCLE, KINDS, LIFECYCLE_ACTIONS, WIRE_TYPES, BookFact, Event, Generator
from venue_sim.markets import ST_ACTIVE, ST_INACTIVE, ST_INITIALIZED, MarketTable
from venue_sim.record import BadMessage, BookCheckpoint, MarketLive, RecordWriter, record_path
from venue_sim.recorder import Recorder
from venue_sim.rest_limit import RETRY_AFTER_FORMS, RetryAfterForm
from venue_sim.server import ServerSettings, SimServer
from venue_sim.tls import TlsFiles, make_certificates, server_context
from venue_sim.truth import TruthEvent, TruthWriter
from venue_sim.wire import WIRE
from venues import default_name, get_venue

__all__ = ["SimOptions", "VenueSim"]

log = get_logger(__name__)


class SimOptions(msgspec.Struct, kw_only=True):
    """What the emulator takes besides its ``sim`` config section (:class:`mdpipe.config.SimConfig`): this run's
    own knobs from the command line (address, faults, duration, TLS, REST limit) and the internals tests and
    benchmarks tune."""

    host: str = "127.0.0.1"
    public_key_pem: str = ""  # PEM text of the accepted key (instead of sim.public_key_path)
    max_skew_s: float = 300.0  # accepted |now - the signed upgrade's timestamp header|
    pong_timeout_s: float = 20.0  # no pong within this after a ping -> disconnect
    trade_share: float = 0.05
    ticker_share: float = 0.10
    send_buffer_bytes: int = 16 << 20  # per-connection unsent bytes before error 25
    tick_s: float = 0.005
    base_ts_ms: int = 0  # virtual clock start for ts_ms; 0 = wall clock at start
    faults: str = ""  # schedule, see venue_sim.faults
    duration_s: float = 0.0  # stop generating after this long; 0 = never (CLI uses it)
    # TLS and the REST rate limit (off by default)
    tls: bool = False  # serve https:// and wss:// with a certificate generated at start-up
    tls_dir: str = ""  # where the CA/server certificate go ("" = a new temporary folder)
    rest_rate: float = 0.0  # REST requests per second per client (key id, else address); 0 = no limit
    rest_burst: float = 0.0  # bucket size; 0 = max(1, rest_rate)
    rest_retry_after: RetryAfterForm = "none"  # what a 429 carries: none (as the default venue), seconds, date


def behaviours(sim: SimConfig, with_checkpoints: bool) -> Behaviours:
    """The real-venue behaviours of the ``sim`` section (venue_sim.lifecycle)."""
    return Behaviours(
        dormant_share=sim.dormant_share,
        activate_after_ms=int(sim.activate_after_s * 1000),
        pause_per_s=sim.pause_per_s,
        pause_markets=sim.pause_markets,
        pause_ms=int(sim.pause_s * 1000),
        flap_share=sim.flap_share,
        metadata_per_s=sim.metadata_per_s,
        unknown_per_s=sim.unknown_lifecycle_per_s,
        fee_update_per_s=sim.fee_update_per_s,
        event_lifecycle=sim.event_lifecycle,
        checkpoint_ms=int(sim.checkpoint_s * 1000) if with_checkpoints else 0,
    )


CHECKPOINT_CHUNK = 2000  # checkpoint books rendered into the record per generator tick


class VenueSim:
    """A running emulated venue."""

    def __init__(self, sim: SimConfig, options: SimOptions | None = None, *, venue: str = "") -> None:
        """``sim``: the emulator's config section (markets, rate, port, auth, behaviours...; `mdpipe sim` folds its
        flags into it); ``options``: this run's own knobs (address, faults, TLS, ...); ``venue``: the venue whose
        protocol is served (``venue.name``; "" = the default venue), through its ``Venue.emulator`` profile; the events
        are generated in the truth format (:mod:`venue_sim.wire`) whatever venue is served."""
        self.sim = sim
        self.venue = get_venue(venue or default_name())
        self.options = options = options if options is not None else SimOptions()
        base = options.base_ts_ms or int(time.time() * 1000)
        self.markets = MarketTable(sim.markets, sim.seed, base, rest_lag_ms=int(sim.rest_lag_s * 1000))
        self.books = Books(sim.seed)
        recording = bool(sim.truth_path)
        self.generator = Generator(
            self.markets,
            self.books,
            seed=sim.seed,
            rate=sim.rate,
            identical_share=sim.identical_share,
            churn_per_s=sim.churn_per_s,
            trade_share=options.trade_share,
            ticker_share=options.ticker_share,
            behaviours=behaviours(sim, with_checkpoints=recording),
        )
        self.record: RecordWriter | None = None
        self.recorder: Recorder | None = None
        if recording:
            self.record = RecordWriter(record_path(sim.truth_path))
            self.recorder = Recorder(self.record, self._last_id)
        self._checkpoints: deque[tuple[BookFact, int]] = deque()  # (checkpoint, markets rendered so far)
        public_key = None
        if sim.auth:
            pem = options.public_key_pem or (Path(sim.public_key_path).read_text() if sim.public_key_path else "")
            if not pem:
                raise ValueError("auth is on but no public key was given (public_key_pem / public_key_path)")
            public_key = load_public_key(pem)
        if options.rest_retry_after not in RETRY_AFTER_FORMS:
            raise ValueError(f"rest_retry_after must be one of {', '.join(RETRY_AFTER_FORMS)}")
        self.tls: TlsFiles | None = None
        if options.tls:
            folder = options.tls_dir or tempfile.mkdtemp(prefix="mdpipe-sim-tls-")
            self.tls = make_certificates(folder, [options.host])
        settings = ServerSettings(
            host=options.host,
            port=sim.port,
            auth=sim.auth,
            public_key=public_key,
            key_id=sim.key_id,
            max_skew_s=options.max_skew_s,
            heartbeat_s=sim.heartbeat_s,
            pong_timeout_s=options.pong_timeout_s,
            send_buffer_bytes=options.send_buffer_bytes,
            ssl_context=server_context(self.tls) if self.tls is not None else None,
            rest_rate=options.rest_rate,
            rest_burst=options.rest_burst,
            rest_retry_after=options.rest_retry_after,
        )
        # the venue's protocol profile: one per run, shared by all connections, over the generator's market table
        # and books, writing the venue record through the same recorder
        profile = self.venue.emulator(
            seed=sim.seed, markets=self.markets, books=self.books, sub_cap=sim.sub_cap, recorder=self.recorder
        )
        if profile is None:
            raise ValueError(f"venue {self.venue.name!r} has no emulator profile (Venue.emulator)")
        self.profile = profile
        self._observe = profile.observe
        self.server = SimServer(
            settings,
            self.markets,
            self.books,
            self._admin,
            last_id=self._last_id,
            venue_ms=self.venue_ms,
            recorder=self.recorder,
            session_factory=profile.session_factory,
            ws_path=profile.ws_path,
            rest_routes=profile.rest_routes,
            rest_base=profile.rest_base,
            rest_handler=profile.rest_handler,
            auth_headers=profile.auth_headers,
        )
        self.faults = Faults(self)
        self.schedule: list[FaultSpec] = parse_faults(options.faults) if options.faults else []
        self.truth: TruthWriter | None = None
        self._ended = False
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
        return f"{'https' if self.tls else 'http'}://{self.options.host}:{self.port}{self.profile.rest_base}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.options.host}:{self.port}{self.server.ws_path}"

    @property
    def ca_file(self) -> str:
        """The CA certificate a client must trust for this venue's TLS ("" without TLS)."""
        return self.tls.ca_file if self.tls is not None else ""

    def _last_id(self) -> int:
        return self.generator.next_id - 1

    def venue_ms(self) -> int:
        """The venue clock: the generator's virtual time, which follows the wall clock from the start (and goes
        on after generation stopped, so a lagging REST view catches up)."""
        gen = self.generator
        if not self.started_at:
            return gen.now_ms()
        return max(gen.now_ms(), self.markets.base_ts_ms + int((time.monotonic() - self.started_at) * 1000))

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.sim.truth_path:
            self.truth = TruthWriter(self.sim.truth_path)
        if self.record is not None:
            now = time.time_ns()
            write, ticker, status = self.record.write, self.markets.ticker, self.markets.status
            for i in range(len(self.markets)):
                if status[i] == ST_ACTIVE:
                    write(MarketLive(ticker(i), 0, now, True, "listed"))
            self.record.flush()
        await self.server.start()
        self.started_at = time.monotonic()
        self.generating = True
        self._tasks.append(asyncio.create_task(self._run(), name="venue-sim-generator"))
        if self.schedule:
            self._tasks.append(asyncio.create_task(self._run_schedule(), name="venue-sim-faults"))
        log.info("sim_started", port=self.port, markets=len(self.markets), rate=self.sim.rate)

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
        if self._end_generation():
            log.info("sim_quiesced", events=self.generator.next_id - 1)

    def _end_generation(self) -> bool:
        """Final checkpoint, truth closed, record flushed (once); False when it already happened."""
        if self._ended:
            return False
        self._ended = True
        self.generating = False
        if self.record is not None:
            self.generator.final_checkpoint()
            self._drain_facts()
            self._render_checkpoints(all_of_them=True)
            self.record.flush()
        if self.truth is not None:
            self.truth.close()
        return True

    async def stop(self) -> None:
        await self.stop_generating()
        await self.server.close()
        if self.record is not None:
            self.record.close()

    async def wait_done(self) -> None:
        """Return when generation ended (duration reached or stop_generating called)."""
        while self.generating:
            await asyncio.sleep(0.05)

    # -- events --------------------------------------------------------------------------------
    def _publish(self, events: list[Event]) -> None:
        if self.generator.facts:
            self._drain_facts()
        if not events:
            return
        truth = self.truth
        if truth is not None and not truth.closed:
            gen_ns = time.time_ns()
            markets = self.markets
            ticker = markets.ticker
            for ev in events:
                ch = ev[1]
                if ch < CH_EVENT_LIFECYCLE:
                    truth.write(TruthEvent(ev[0], KINDS[ch], ticker(ev[2]), ev[3], gen_ns, ev[4].encode()))  # type: ignore[arg-type]
                else:  # event-level message: its "market" is the event ticker
                    name = markets.event_ticker(ev[2])
                    truth.write(TruthEvent(ev[0], "lifecycle", name, ev[3], gen_ns, ev[4].encode(), WIRE_TYPES[ch]))
        if self._observe is not None:  # the venue profile's mirror sees every batch, connections or not
            self._observe(events)
        self.server.broadcast(events)

    def _drain_facts(self) -> None:
        """Turn the generator's facts into records (checkpoints are queued for rendering)."""
        facts, self.generator.facts = self.generator.facts, []
        rec = self.record
        if rec is None:
            return
        now = time.time_ns()
        ticker = self.markets.ticker
        for fact in facts:
            kind = fact[0]
            if kind == "live":
                _, m, after_id, live, event = fact
                rec.write(MarketLive(ticker(m), after_id, now, live, event))  # type: ignore[arg-type]
            elif kind == "bad":
                rec.write(BadMessage(fact[1], fact[2]))  # type: ignore[arg-type]
            elif kind == "book":
                self._checkpoints.append((fact[1], 0))  # type: ignore[arg-type]

    def _render_checkpoints(self, all_of_them: bool = False) -> None:
        """Write checkpoint books into the record, ``CHECKPOINT_CHUNK`` markets per call (all when asked)."""
        rec = self.record
        budget = CHECKPOINT_CHUNK
        while self._checkpoints and rec is not None and (all_of_them or budget > 0):
            (at_ms, after_id, markets, slots), done = self._checkpoints[0]
            end = len(markets) if all_of_them else min(len(markets), done + budget)
            mid, ticker, levels = self.books.mid, self.markets.ticker, WIRE.wire_levels
            for k in range(done, end):
                m = markets[k]
                yes, no = levels(mid(m), slots[k * SLOTS : (k + 1) * SLOTS].tolist())
                rec.write(BookCheckpoint(at_ms, after_id, ticker(m), yes, no))
            budget -= end - done
            if end == len(markets):
                self._checkpoints.popleft()
            else:
                self._checkpoints[0] = ((at_ms, after_id, markets, slots), end)

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
            if self.record is not None:
                if self._checkpoints:
                    self._render_checkpoints()
                self.record.maybe_flush()
            await asyncio.sleep(opts.tick_s)
        self._end_generation()
        log.info("sim_duration_reached", events=gen.next_id - 1)

    async def _run_schedule(self) -> None:
        for fault in self.schedule:
            delay = self.started_at + fault.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.faults.apply(fault)

    def apply_fault(self, fault: FaultSpec) -> int:
        """Venue-level faults here (a bad-number message is a venue event); connection faults on the server."""
        if fault.kind == "badnumber":
            if not self.generating:
                return 0
            out: list[Event] = []
            self.generator.bad_delta(out, fault.variant or "exp")
            self._publish(out)
            return len(self.server.connections)
        return self.server.apply_fault(fault)

    def create_market(self) -> str:
        """List a new market now (lifecycle ``created``, then ``activated`` at once or ``activate_after_s`` later);
        returns its ticker."""
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

    def lifecycle(self, action: str, ticker: str) -> bool:
        """Send one lifecycle message for ``ticker`` now (``deactivate``, ``activate``, ``metadata``,
        ``metadata_legacy``, ``unknown``, ``fee_set``/``fee_clear`` on its event); False when its status does not
        allow it."""
        if not self.generating:
            raise RuntimeError("the venue stopped generating")
        m = self.markets.index(ticker)
        if m is None:
            raise KeyError(ticker)
        out: list[Event] = []
        done = self.generator.lifecycle_now(out, action, m)
        self._publish(out)
        return done

    def set_rate(self, rate: float) -> None:
        self.generator.set_rate(rate)

    def stats(self) -> dict[str, Any]:
        gen = self.generator
        status = self.markets.status
        return {
            "generating": self.generating,
            "events_generated": gen.next_id - 1,
            "identical_deltas": gen.identical,
            "markets": len(self.markets),
            "active_markets": status.count(ST_ACTIVE),
            "paused_markets": status.count(ST_INACTIVE),
            "initialized_markets": status.count(ST_INITIALIZED),
            "dormant_markets": self.markets.initial - gen.live_count,
            "rest_lag_s": self.sim.rest_lag_s,
            "ca_file": self.ca_file,
            "behaviours": {**gen.counts, "redelivered": self.server.redelivered()},
            "record_records": self.record.count if self.record is not None else 0,
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
        if path == "/_sim/lifecycle":
            ticker = str(payload.get("ticker", ""))
            action = str(payload.get("action", ""))
            if self.markets.index(ticker) is None:
                return 404, {"error": f"unknown market {ticker}"}
            if action not in LIFECYCLE_ACTIONS:
                return 400, {"error": f"action must be one of {', '.join(LIFECYCLE_ACTIONS)}"}
            if not self.generating:
                return 409, {"error": "the venue stopped generating"}
            return 200, {"ok": self.lifecycle(action, ticker)}
        if path == "/_sim/rate":
            self.set_rate(float(payload["rate"]))
            return 200, {"ok": True}
        return 404, {"error": f"no route {method} {path}"}
