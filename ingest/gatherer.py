"""The gatherer process: registry + shard plan + connections + producer, wired together in one event loop.

Tasks: one per connection (:class:`ingest.connection.Connection`, picows or websockets per ``ws_client``),
periodic REST discovery (cursor paging, backoff on failure; never touches running subscriptions when it fails),
a lifecycle refresh of reference data, a service loop (producer delivery reports and spool drain, metrics sync)
and the silence watchdog.
Frames go to ``raw.<id>`` keyed by market; malformed frames to ``dlq``; MarketRefs to ``markets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ingest import metrics as m
from ingest.backoff import backoff
from ingest.connection import Connection, connection_class
from ingest.keys import EventKeyer
from ingest.producer import RawProducer
from ingest.recent import RecentKeys
from ingest.registry import MarketRegistry, RestPage
from ingest.rest import DiscoveryError, fetch_markets_page
from ingest.shards import ShardPlan
from ingest.venues.kalshi.auth import Signer
from ingest.venues.kalshi.protocol import KalshiSession, SessionStats
from mdpipe.logging import get_logger
from schemas.dlq import DeadLetter, encode_dead_letter
from schemas.kalshi import LifecycleMsg
from schemas.markets import MarketRef, encode_market

__all__ = ["Gatherer", "GathererOptions"]

log = get_logger(__name__)

LIFECYCLE_CONNECTIONS = 2  # connections carrying the unfiltered lifecycle channel (one can drop, see ingest.anchors)


class GathererOptions(msgspec.Struct, kw_only=True):
    """Everything one gatherer needs besides the producer (the CLI fills it from config + flags)."""

    gatherer_id: str
    rest_url: str
    ws_url: str
    channels: list[str]
    markets_per_connection: int = 7000
    markets_per_subscription: int = 7000
    discovery_interval_s: float = 60.0
    silence_timeout_s: float = 30.0
    probe_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    key_horizon_s: float = 120.0
    snapshot_hold_s: float = 1.0
    anchor_hold_s: float = 5.0
    discovery_page: int = 1000
    raw_topic: str = ""
    dlq_topic: str = "dlq"
    markets_topic: str = "markets"
    discover: bool = True  # False: markets come only from add_markets() (benchmarks)
    ws_client: str = "picows"  # "picows" | "websockets" (gather.ws_client)


class Gatherer:
    """One gatherer (see module docstring)."""

    def __init__(self, opts: GathererOptions, producer: RawProducer, signer: Signer | None = None) -> None:
        self.opts = opts
        self.gid = opts.gatherer_id
        self.producer = producer
        self.signer = signer
        self.raw_topic = opts.raw_topic or f"raw.{self.gid}"
        self.registry = MarketRegistry()
        self.plan = ShardPlan(opts.markets_per_connection)
        self.keyer = EventKeyer(int(opts.key_horizon_s * 1000))
        self._lifecycle_keys = RecentKeys(100_000)
        self.stats = SessionStats()
        self.connections: list[Connection] = []
        self._conn_class = connection_class(opts.ws_client)
        self.discoveries = 0
        self.discovery_failures = 0
        self._refresh: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._exported: dict[str, int] = {}
        self._send = producer.send
        self._log = log.bind(gatherer=self.gid)
        self.running = False

    # -- frames out ----------------------------------------------------------------------------
    def _emit(self, market: str, value: bytes) -> None:
        self._send(self.raw_topic, market.encode(), value)

    def _dead(self, data: bytes, reason: str) -> None:
        self._log.warning("dead_letter", reason=reason[:200], size=len(data))
        letter = DeadLetter(stage=f"gather:{self.gid}", reason=reason, payload=data, at_ns=time.time_ns())
        self._send(self.opts.dlq_topic, None, encode_dead_letter(letter))

    def _publish_refs(self, refs: list[MarketRef]) -> None:
        topic = self.opts.markets_topic
        for ref in refs:
            self._send(topic, ref.ticker.encode(), encode_market(ref))

    # -- markets -------------------------------------------------------------------------------
    def _connection(self, index: int) -> Connection:
        while len(self.connections) <= index:
            i = len(self.connections)
            session = KalshiSession(
                gatherer=self.gid,
                conn_id=i,
                channels=self.opts.channels,
                sub_cap=self.opts.markets_per_subscription,
                keyer=self.keyer,
                emit=self._emit,
                dead=self._dead,
                lifecycle=i < LIFECYCLE_CONNECTIONS,
                on_lifecycle=self._on_lifecycle,
                log=self._log,
                stats=self.stats,
                snapshot_hold_s=self.opts.snapshot_hold_s,
                anchor_hold_s=self.opts.anchor_hold_s,
                lifecycle_covered=self._lifecycle_covered,
                lifecycle_seen=self._lifecycle_keys.seen,
            )
            conn = self._conn_class(
                session,
                self.opts.ws_url,
                self._headers,
                backoff_initial=self.opts.backoff_initial_s,
                backoff_max=self.opts.backoff_max_s,
                on_reconnect=self._on_reconnect,
            )
            self.connections.append(conn)
            if self.running:
                self._tasks.append(conn.start())
        return self.connections[index]

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"mdpipe-gather/{self.gid}"}
        if self.signer is not None:
            headers.update(self.signer.headers())
        return headers

    def _lifecycle_covered(self, session: KalshiSession, since_ns: int) -> bool:
        """Has another of this gatherer's lifecycle subscriptions been live since ``since_ns`` (so it received what
        ``session``'s ended subscription was still waiting to key)?"""
        for conn in self.connections:
            other = conn.session
            if other is not session and other.is_connected and 0 < other.lifecycle_since_ns <= since_ns:
                return True
        return False

    def _on_reconnect(self, reason: str) -> None:
        m.RECONNECTS.labels(self.gid, reason.split(":")[0][:40] or "closed").inc()

    def add_markets(self, tickers: list[str]) -> None:
        for index, placed in self.plan.assign(tickers).items():
            conn = self._connection(index)
            conn.session.add_markets(placed)
            conn.poke()

    def remove_markets(self, tickers: list[str]) -> None:
        for index, gone in self.plan.release(tickers).items():
            conn = self.connections[index]
            conn.session.remove_markets(gone)
            conn.poke()

    def _on_lifecycle(self, market: str, lc: LifecycleMsg, recv_ns: int) -> None:
        add, remove = self.registry.apply_lifecycle(market, lc)
        if add:
            self.add_markets([market])
        if remove:
            self.remove_markets([market])
        self._refresh.add(market)

    # -- discovery -----------------------------------------------------------------------------
    async def _page(self, cursor: str = "", status: str = "open", tickers: list[str] | None = None) -> RestPage:
        return await asyncio.to_thread(
            fetch_markets_page,
            self.opts.rest_url,
            status=status,
            cursor=cursor,
            limit=self.opts.discovery_page,
            tickers=tickers,
            signer=self.signer,
        )

    async def discover_once(self) -> int:
        """One full listing of open markets; returns how many were listed."""
        seen: set[str] = set()
        cursor = ""
        while True:
            page = await self._page(cursor)
            add, remove, refs = self.registry.apply_listing(page.markets, time.time_ns(), seen)
            self._publish_refs(refs)
            if add:
                self.add_markets(add)
            if remove:
                self.remove_markets(remove)
            cursor = page.cursor or ""
            if not cursor or not page.markets:
                break
        gone = self.registry.release_unseen(seen)
        if gone:
            self.remove_markets(gone)
        self.discoveries += 1
        self._log.info("discovery_done", listed=len(seen), held=len(self.registry), released=len(gone))
        return len(seen)

    async def _discovery_loop(self) -> None:
        delays = backoff(self.opts.backoff_initial_s, self.opts.backoff_max_s)
        while True:
            try:
                await self.discover_once()
            except DiscoveryError as exc:
                self.discovery_failures += 1
                m.DISCOVERY_ERRORS.labels(self.gid).inc()
                delay = next(delays)
                self._log.warning("discovery_failed", error=str(exc)[:300], retry_s=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            delays = backoff(self.opts.backoff_initial_s, self.opts.backoff_max_s)
            await asyncio.sleep(self.opts.discovery_interval_s)

    async def _refresh_loop(self) -> None:
        """Reference data of markets named by lifecycle events, fetched over REST in batches of 100."""
        while True:
            await asyncio.sleep(1.0)
            while self._refresh:
                batch = [self._refresh.pop() for _ in range(min(100, len(self._refresh)))]
                try:
                    page = await self._page(status="", tickers=batch)
                except DiscoveryError as exc:
                    m.DISCOVERY_ERRORS.labels(self.gid).inc()
                    self._log.warning("refresh_failed", error=str(exc)[:300])
                    self._refresh.update(batch)
                    break
                add, remove, refs = self.registry.apply_listing(page.markets, time.time_ns())
                self._publish_refs(refs)
                if add:
                    self.add_markets(add)
                if remove:
                    self.remove_markets(remove)

    # -- housekeeping --------------------------------------------------------------------------
    async def _service_loop(self) -> None:
        last_sync = 0.0
        while True:
            self.producer.service()
            now = time.monotonic()
            if now - last_sync >= 1.0:
                last_sync = now
                self.sync_metrics()
            await asyncio.sleep(0.02)

    def sync_metrics(self) -> None:
        gid = self.gid
        s = self.stats
        p = self.producer
        current = {f"kind:{k}": v for k, v in s.by_kind.items()}
        current.update(gaps=s.gaps, dups=s.duplicates, errors=s.errors, dead=s.dead, dropped=p.spool.dropped)
        counters: dict[str, Callable[[], Any]] = {
            "gaps": lambda: m.GAPS.labels(gid),
            "dups": lambda: m.DUPLICATES.labels(gid),
            "errors": lambda: m.VENUE_ERRORS.labels(gid),
            "dead": lambda: m.DEAD_LETTERS.labels(gid),
            "dropped": lambda: m.DROPPED.labels(gid),
        }
        for name, value in current.items():
            delta = value - self._exported.get(name, 0)
            if delta > 0:
                metric = m.FRAMES.labels(gid, name[5:]) if name.startswith("kind:") else counters[name]()
                metric.inc(delta)
                self._exported[name] = value
        samples, p.latency_samples = p.latency_samples, []
        hist = m.PRODUCE_LATENCY.labels(gid)
        for v in samples:
            hist.observe(v)
        m.CONNECTIONS_UP.labels(gid).set(sum(1 for c in self.connections if c.up))
        m.SUBSCRIBED_MARKETS.labels(gid).set(len(self.plan.conn_of))
        m.PRODUCER_QUEUE.labels(gid).set(p.queued)
        m.SPOOL_RECORDS.labels(gid).set(len(p.spool))
        m.SPOOL_BYTES.labels(gid).set(p.spool.bytes)

    def _silence_verdict(self, conn: Connection, now_ns: int) -> str:
        """What the watchdog does with one connection now: "" (nothing), "probe", or a reason to reconnect.

        A connection is judged by its own evidence only (never by its siblings' traffic): after
        ``silence_timeout_s`` without a message it is probed (:meth:`KalshiSession.probe`); a probe unanswered
        within ``probe_timeout_s`` means the socket is frozen, a reply whose seq is ahead of what arrived means the
        venue sent data that never came; a reply in step means its markets are quiet, and it is left alone until
        the next silence. A connection of quiet markets therefore stays up for hours, at one cheap command per sid
        per ``silence_timeout_s``."""
        s = conn.session
        if s.probe_state == "behind":
            return "frozen: the venue's seq moved on without data"
        if s.probe_state == "waiting":
            if now_ns - s.probe_sent_ns > int(self.opts.probe_timeout_s * 1e9):
                return "silent: probe unanswered"
            return ""
        last = max(s.last_rx_ns, conn.connected_ns)
        if now_ns - last > int(self.opts.silence_timeout_s * 1e9):
            return "probe"
        return ""

    async def _watchdog(self) -> None:
        """Times the sessions (placing snapshots, keying stalled lifecycle streams) and watches for silence."""
        while True:
            await asyncio.sleep(0.25)
            now = time.time_ns()
            for conn in self.connections:
                if not conn.up:
                    continue
                conn.session.tick(now)
                verdict = self._silence_verdict(conn, now)
                if verdict == "probe":
                    if conn.session.probe(now):
                        conn.poke()
                elif verdict:
                    self._log.warning("ws_silent_reconnect", conn=conn.session.conn_id, reason=verdict)
                    await conn.kill(verdict.split(":")[0])

    def healthy(self) -> bool:
        return self.running and any(c.up for c in self.connections)

    # -- run -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then close connections and flush the producer."""
        self.running = True
        self._tasks += [c.start() for c in self.connections if c.task is None]  # added before run()
        self._connection(0)  # started by _connection() now that running is set
        self._tasks.append(asyncio.create_task(self._service_loop(), name="gather-service"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name="gather-watchdog"))
        if self.opts.discover:
            self._tasks.append(asyncio.create_task(self._discovery_loop(), name="gather-discovery"))
            self._tasks.append(asyncio.create_task(self._refresh_loop(), name="gather-refresh"))
        self._log.info("gatherer_started", ws_url=self.opts.ws_url, channels=self.opts.channels)
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self, flush_timeout: float = 10.0) -> None:
        self.running = False
        await asyncio.gather(*(c.stop() for c in self.connections), return_exceptions=True)
        now = time.time_ns()
        for c in self.connections:  # frames still waiting for their key or position go out before the producer closes
            c.session.flush(now)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await asyncio.to_thread(self.producer.close, flush_timeout)
        self.sync_metrics()
        self._log.info("gatherer_stopped", acked=self.producer.acked, spooled=len(self.producer.spool))
