"""The gatherer process: registry + shard plan + connections + producer, wired together in one event loop.

Tasks: one per connection (:class:`ingest.connection.Connection`, picows or websockets per ``ws_client``),
periodic REST discovery as the venue's :meth:`venues.interface.Venue.discovery` says (complete cursor-paged listings
of every held status, then look-ups by ticker of held markets they missed, see :mod:`ingest.registry`; or the
venue's own listing walk), a lifecycle refresh of reference data, a service loop (producer
delivery reports and spool drain, metrics sync) and the silence watchdog. Discovery and refresh share one
:class:`ingest.rest.RestClient`: every REST request is paced to ``rest_requests_per_s`` and a 429 pauses them all.
Frames go to ``raw.<id>`` keyed by market; malformed frames to ``dlq``; MarketRefs to ``markets`` (keyed venue:ticker).

Frames are held (:attr:`ingest.producer.RawProducer.held`) and released to librdkafka together once the oldest has
waited ``linger_ms`` (``gather.linger_ms``): at the end of the first socket read after that (the connections call
:meth:`Gatherer.after_read`), or, if no read comes, from a timer armed when the first frame is held and due at twice
``linger_ms``. Releasing at the end of a read costs no wake-up of its own, and one release per window is one
librdkafka request instead of a wake-up of its thread per partition (see :mod:`ingest.producer`). Each release also
serves the delivery reports, so the service loop runs every ``SERVICE_S`` only (its work then: reports of the last
release, metrics), and every ``SERVICE_SPOOLING_S`` while frames are spooled (the spool drains at that pace).
The periodic tasks (service loop, watchdog, broker watch, refresh, the supervisor) wake on one grid of loop time
(:mod:`ingest.ticks`), so that steps due together cost one wake-up of the event loop, not one each.

Failures, decided per loop (every failed iteration is one structured ``task_failed`` line and a count in
``mdpipe_gather_task_failures_total{task}``):

* discovery and refresh (the venue's REST API: refused, reset, timed out, HTTP errors, bodies cut short, garbage,
  or a bug meeting an odd object) retry with backoff for ever and never release anything on a failed listing.
  A failed discovery pass is resumed where it failed -- the listing from the cursor of the page that failed, or
  the look-ups from the batch that failed -- instead of listing everything again; only a pass whose every listing
  completed releases markets (after their look-ups). A cursor the venue refuses (HTTP 400/404/410) restarts that
  status's listing from its first page.
  They never make the gatherer unhealthy or exit: the held markets keep streaming over the WebSocket, a restart
  would not repair the venue's REST and would drop every connection -- on every gatherer at once.
* the service loop (delivery reports, spool drain, metrics) retries with a short backoff; failing for
  ``task_failure_limit_s`` without one success (e.g. a spool segment that cannot be read) is not survivable:
  nothing reaches the broker any more, so the gatherer turns unhealthy and :meth:`Gatherer.run` returns with
  ``failure`` set; the CLI exits with status 3 so that its supervisor restarts it.
* a task that ends at all (any loop, connection or the watchdog; they run until shutdown) is noticed by the
  supervisor in :meth:`Gatherer.run` within about a quarter second: unhealthy, exit status 3.
* credentials the venue refuses (HTTP 401/403 on WebSocket upgrades or REST requests) are retried like any
  failure until :class:`ingest.auth_refusals.AuthRefusals` says to give up (nothing streaming, 3 refusals in a
  row lasting 5 s from a start that was never accepted, or ``auth_refusal_limit_s`` once it had been): then
  ``auth_failure`` is set with ``failure`` and the CLI exits with status 2 and one line saying what to check.
* the broker being unreachable is never a failure: :class:`ingest.outage.BrokerWatch` (task ``broker``) moves the
  frames to the on-disk spool after ``spool_after_s`` and replays them in order when the broker is back; only a
  partition check deferred to then (topics missing or partitioned unlike ``events``) fails the gatherer.
* frames the spool cannot keep (spool full, disk full, I/O errors; see :mod:`ingest.spool`) are counted in
  ``mdpipe_gather_dropped_frames_total`` and turn ``/healthz`` unhealthy for ``unhealthy_after_drop_s``; the
  gatherer does not exit over them: exiting would throw away the frames waiting in the producer queue, and a
  restart does not free a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ingest import metrics as m
from ingest.auth_refusals import REFUSED_STATUSES, AuthRefusals, http_status, refusal_detail
from ingest.backoff import backoff
from ingest.connection import Connection, connection_class
from ingest.held_order import release_in_due_order
from ingest.listing_refs import ListingRefs
from ingest.outage import BrokerWatch
from ingest.producer import RawProducer
from ingest.read_pacer import ReadPacer
from ingest.recent import RecentKeys
from ingest.registry import BoundedLabels, Changes, MarketRegistry
from ingest.rest import DiscoveryError, RestClient
from ingest.shards import ShardPlan
from ingest.ticks import sleep_on_ticks
from ingest.tls import client_context
from mdpipe.config import GatherConfig, VenueConfig
from mdpipe.logging import get_logger
from schemas.codec import SchemaError
from schemas.dlq import DeadLetter, encode_dead_letter
from schemas.markets import MarketRef, encode_market
from venues import default_name, get_venue
from venues.interface import Discovery, Signer, StatusListings, VenueSession, discovery_kind

__all__ = ["DISCOVERY_PAGE", "Gatherer"]

log = get_logger(__name__)

SERVICE_S = 0.2  # service loop period while nothing is spooled (releases serve delivery reports meanwhile)
SERVICE_SPOOLING_S = 0.02  # ... and while the spool holds frames (its drain pace)
SUPERVISE_S = 0.25  # the supervisor's look at the tasks and the credentials' refusals
LIFECYCLE_CONNECTIONS = 2  # connections carrying the unfiltered lifecycle channel (one can drop, see ingest.anchors)
DISCOVERY_PAGE = 1000  # markets asked for per REST listing page (a venue may cap it lower)
# the venue session's lifecycle fallback counters (``SessionStats.lifecycle_<how>``), exported per ``how``
_LIFECYCLE_KEYS = ("backward", "loose", "uncertain", "unanchored", "ended_dropped", "ended_sent")


class _DiscoveryPass:
    """A discovery pass in progress, kept across failed attempts so that the next attempt resumes it."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.seen: set[str] = set()  # tickers the listings showed so far
        self.index = 0  # the status being listed
        self.cursor = ""  # its next page ("" = the first)
        self.pages = 0
        self.missing: list[str] | None = None  # once every listing completed: held markets to look up by ticker
        self.looked_up = 0  # how many of ``missing`` were looked up
        self.released = 0
        self.attempts = 1


class Gatherer:
    """One gatherer (see module docstring)."""

    def __init__(
        self,
        gather: GatherConfig,
        venue: VenueConfig,
        producer: RawProducer,
        *,
        gatherer_id: str,
        raw_topic: str,
        dlq_topic: str,
        markets_topic: str,
        signer: Signer | None = None,
        partition_check: Callable[[], Any] | None = None,
        discover: bool = True,
        discovery_page: int = DISCOVERY_PAGE,
    ) -> None:
        """Settings come from the ``gather`` and ``venue`` sections (the CLI folds its flags into them); the rest is
        this process's own: its id, its topics, the producer, the request signer. ``discover=False``: markets come
        only from :meth:`add_markets` (benchmarks). ``partition_check``: the topic layout check to run once the
        broker answers (when it could not be run at start-up); it raises :class:`mdpipe.config.ConfigError` on a bad
        layout (see :mod:`ingest.outage`)."""
        opts = self.opts = gather  # this gatherer's settings
        self.venue_config = venue  # the venue section: URLs, CA file, name
        self.gid = gatherer_id
        self.producer = producer
        self.signer = signer
        self.raw_topic = raw_topic
        self.dlq_topic = dlq_topic
        self.markets_topic = markets_topic
        self.discover = discover
        self.venue = get_venue(venue.name or default_name())  # the venue package: sessions, keys, stats, discovery
        found = self.venue.discovery(venue.rest_url, discovery_page)
        # a venue listing by status: its vocabulary rules the registry (else discovery asks the venue for each pass)
        listed = discovery_kind(found) == "status_listings"  # by its tag: TypeError for a half-built one
        self.listings: StatusListings | None = found if listed else None  # type: ignore[assignment]
        self.registry = MarketRegistry(self.listings, opts.rest_lag_s) if self.listings is not None else None
        self._listings_url = venue.rest_url
        cap = self.venue.max_markets_per_connection
        self.plan = ShardPlan(min(opts.markets_per_connection, cap) if cap else opts.markets_per_connection)
        self._discovery_page = discovery_page
        self.keyer = self.venue.keyer(int(opts.key_horizon_s * 1000))
        self._lifecycle_keys = RecentKeys(100_000)
        self.stats = self.venue.session_stats()
        self.channels = list(opts.channels) or list(self.venue.channels)  # gather.channels, [] = all the venue's
        self.connections: list[Connection] = []
        self._conn_class = connection_class(opts.ws_client)
        self.discoveries = 0
        self.discovery_failures = 0
        self.discovery_resumes = 0
        self._pass: _DiscoveryPass | None = None
        self._listing_refs = ListingRefs()  # a venue discovery's references as last published
        self.rest = RestClient(
            gatherer=gatherer_id,
            requests_per_s=opts.rest_requests_per_s,
            signer=signer,
            ca_file=venue.ca_file,
        )
        self._ssl = client_context(venue.ca_file) if venue.ws_url.startswith("wss://") else None
        self._refresh: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._exported: dict[str, int] = {}
        self._send = producer.send
        self._held = producer.held  # frames waiting for release (see module docstring)
        self._linger_s = max(0.0, opts.linger_ms / 1000)
        self._held_since = 0.0  # loop time the oldest held frame was held
        self._release_timer: asyncio.TimerHandle | None = None
        self._release_soon: asyncio.Handle | None = None  # a release at the end of this loop iteration's reads
        # read coalescing (picows only: websockets reads its socket itself); see ingest.read_pacer
        self.read_pacer = ReadPacer(opts.read_window_ms / 1000 if opts.ws_client == "picows" else 0.0)
        self._loop: asyncio.AbstractEventLoop | None = None  # set while running: frames are held only then
        self._log = log.bind(gatherer=self.gid)
        self.running = False
        self.failure: str | None = None  # why the gatherer gave up (set once; run() returns, the CLI exits 3)
        self.auth_refusals = AuthRefusals(opts.auth_refusal_limit_s)
        self.auth_failure: str | None = None  # set with failure when refused credentials made it give up (exit 2)
        self._lifecycle_types = BoundedLabels(32)  # unknown lifecycle types -> metric label, logged once each
        self._rest_statuses = BoundedLabels(32)  # unknown REST statuses, logged once each
        self._drops_seen = 0
        self._last_drop = -1e18  # monotonic time the dropped-frames count last moved
        self._last_sync = 0.0
        self.watch = BrokerWatch(
            producer,
            self.gid,
            probe_topic=self.raw_topic,
            spool_after_s=opts.spool_after_s,
            fsync_s=opts.spool_fsync_s,
            partition_check=partition_check,
            on_fatal=self._fail,
            log=self._log,
        )

    # -- frames out ----------------------------------------------------------------------------
    def _emit(self, market: str, value: bytes) -> None:
        held = self._held
        held.append((self.raw_topic, market.encode(), value))
        if len(held) == 1:
            self._first_held()

    def _first_held(self) -> None:
        """A frame is held and none was before: note when, and make sure it is released within ``linger_ms``."""
        loop = self._loop
        if loop is None:  # not running (or shutting down): nothing would release it later
            self.producer.release()
            return
        self._held_since = now = loop.time()
        if self.read_pacer.enabled and self.read_pacer.window_started:
            # paced reads: what a read returns waited in the kernel since its window began
            self._held_since = min(now, self.read_pacer.window_started)
        # A fallback: while frames arrive, the end of a read releases them (after_read); a timer due at the same
        # time would fire first and cost a wake-up of its own per release.
        self._release_timer = loop.call_at(now + 2 * self._linger_s, self._release_held)

    def after_read(self) -> None:
        """A connection finished handling one socket read: release the held frames once the oldest is due.

        With paced reads the release waits for the end of this loop iteration, so that the other connections read
        in the same iteration (their windows end together) go out in the same release."""
        loop = self._loop
        if self._held and loop is not None and loop.time() - self._held_since >= self._linger_s:
            if not self.read_pacer.enabled:
                self._release_held()
            elif self._release_soon is None:
                self._release_soon = loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        timer = self._release_timer
        if timer is not None:
            timer.cancel()
            self._release_timer = None
        soon = self._release_soon
        if soon is not None:
            soon.cancel()
            self._release_soon = None
        self.producer.release()

    def _dead(self, data: bytes, reason: str) -> None:
        self._log.warning("dead_letter", reason=reason[:200], size=len(data))
        letter = DeadLetter(stage=f"gather:{self.gid}", reason=reason, payload=data, at_ns=time.time_ns())
        self._send(self.dlq_topic, None, encode_dead_letter(letter))

    def _publish_refs(self, refs: list[MarketRef]) -> None:
        """To the compacted ``markets`` topic, keyed ``venue:ticker`` (the sink's key: a name may exist at two
        venues, and compaction must not let one venue's reference replace another's)."""
        topic = self.markets_topic
        for ref in refs:
            self._send(topic, f"{ref.venue}:{ref.ticker}".encode(), encode_market(ref))

    # -- markets -------------------------------------------------------------------------------
    def _connection(self, index: int) -> Connection:
        while len(self.connections) <= index:
            i = len(self.connections)
            session = self.venue.session(
                gatherer=self.gid,
                conn_id=i,
                channels=self.channels,
                sub_cap=self.opts.markets_per_subscription,
                keyer=self.keyer,
                emit=self._emit,
                dead=self._dead,
                lifecycle=i < LIFECYCLE_CONNECTIONS,
                on_lifecycle=functools.partial(self._on_lifecycle_via, i),
                log=self._log,
                stats=self.stats,
                snapshot_hold_s=self.opts.snapshot_hold_s,
                anchor_hold_s=self.opts.anchor_hold_s,
                anchor_max_wait_ms=self.opts.anchor_max_wait_ms,
                lifecycle_peers=self._lifecycle_peers,
                lifecycle_seen=self._lifecycle_keys.seen,
            )
            conn = self._conn_class(
                session,
                self.venue_config.ws_url,
                self._headers,
                backoff_initial=self.opts.backoff_initial_s,
                backoff_max=self.opts.backoff_max_s,
                on_reconnect=self._on_reconnect,
                auth_refusals=self.auth_refusals,
                ssl_context=self._ssl,
                ca_file=self.venue_config.ca_file,
                on_read=self.after_read,
                read_pacer=self.read_pacer,
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

    def _lifecycle_peers(self, session: VenueSession) -> list[VenueSession]:
        """This gatherer's other connected sessions: a session whose lifecycle subscription ended asks them which of
        its waiting messages they received too (only a venue session that subscribes the lifecycle channel on several
        connections asks)."""
        return [c.session for c in self.connections if c.session is not session and c.session.is_connected]

    def _on_reconnect(self, reason: str) -> None:
        m.RECONNECTS.labels(self.gid, reason.split(":")[0][:40] or "closed").inc()

    def add_markets(self, tickers: list[str]) -> None:
        self._place(self.plan.assign(tickers))

    def add_market_groups(self, groups: list[list[str]]) -> None:
        """Hold each group's markets together on one connection (e.g. both tokens of one question)."""
        self._place(self.plan.assign_groups(groups))

    def _place(self, placement: dict[int, list[str]]) -> None:
        for index, placed in placement.items():
            conn = self._connection(index)
            conn.session.add_markets(placed)
            conn.poke()

    def remove_markets(self, tickers: list[str]) -> None:
        for index, gone in self.plan.release(tickers).items():
            conn = self.connections[index]
            conn.session.remove_markets(gone)
            conn.poke()

    def _on_lifecycle_via(self, index: int, market: str, lc: Any, recv_ns: int) -> None:
        """A lifecycle message from connection ``index``: every lifecycle connection applies it to the registry
        (idempotent: the connections see the same stream), the first connected one alone counts it."""
        counting = next(
            (i for i, c in enumerate(self.connections) if c.session.lifecycle_sid is not None and c.up), index
        )
        self._on_lifecycle(market, lc, recv_ns, count=index == counting)

    def _on_lifecycle(self, market: str, lc: Any, recv_ns: int, count: bool = True) -> None:
        """Every lifecycle message (the protocol already stored it as a frame), read by the venue's listings.

        Known types subscribe or release per :mod:`ingest.registry`; unknown ones change nothing, are counted by
        type and logged once per type. The market's reference data is then refreshed over REST."""
        listings, registry = self.listings, self.registry
        if listings is None or registry is None:
            return  # a venue without status listings has no lifecycle vocabulary
        ticker, event = listings.lifecycle_of(lc)
        if not count:
            pass
        elif listings.classify(event) == "unknown":
            label, first = self._lifecycle_types.label(event)
            m.LIFECYCLE_UNKNOWN.labels(self.gid, label).inc()
            m.LIFECYCLE.labels(self.gid, label).inc()
            if first:
                self._log.warning("lifecycle_unknown_type", type=event[:100], market=market, kept=True)
        else:
            m.LIFECYCLE.labels(self.gid, event or "none").inc()
        if not ticker:
            return  # e.g. keyed by an event: no market to hold or refresh
        add, remove = registry.apply_lifecycle(ticker, event, recv_ns)
        if add:
            self.add_markets([ticker])
        if remove:
            self.remove_markets([ticker])
        self._refresh.add(ticker)

    def _apply(self, changes: Changes) -> None:
        """Carry out a registry decision: publish reference data, subscribe, release."""
        self._publish_refs(changes.refs)
        if changes.add:
            self.add_markets(changes.add)
        if changes.remove:
            self.remove_markets(changes.remove)
        if changes.stale:
            m.REST_STALE.labels(self.gid).inc(changes.stale)
        for status in changes.unknown_statuses:
            if self._rest_statuses.label(status)[1]:
                self._log.warning("rest_unknown_status", status=status[:100], kept=True)

    # -- discovery -----------------------------------------------------------------------------
    def _current_listings(self) -> tuple[StatusListings | None, MarketRegistry | None]:
        """The venue's status listings at the venue section's REST URL as it is now (the section may be replaced
        while running), and the registry they rule."""
        url = self.venue_config.rest_url
        if self.listings is not None and self.registry is not None and url != self._listings_url:
            found = self.venue.discovery(url, self._discovery_page)
            if discovery_kind(found) == "status_listings":
                self.listings = self.registry.rules = found  # type: ignore[assignment]
            self._listings_url = url
        return self.listings, self.registry

    async def _get(self, url: str, purpose: str) -> bytes:
        """One ``GET`` through the shared, paced REST client; refusals of the credentials (HTTP 401/403) and accepted
        requests are counted for :class:`ingest.auth_refusals.AuthRefusals`."""
        try:
            body = await self.rest.get(url, purpose=purpose)
        except DiscoveryError as exc:
            code = http_status(exc)
            if code is not None and code in REFUSED_STATUSES:
                self.auth_refusals.refused("rest", time.monotonic(), refusal_detail(exc, code))
            raise
        self.auth_refusals.accepted("rest")
        return body

    async def _page(self, listings: StatusListings, url: str, purpose: str) -> tuple[list[Any], str]:
        """The listed markets and next cursor of ``GET url`` (:meth:`_get`); a malformed body is a
        :class:`DiscoveryError`."""
        body = await self._get(url, purpose)
        try:
            return listings.page(body)
        except SchemaError as exc:
            raise DiscoveryError(f"GET {url}: bad body: {exc}") from None

    async def discover_once(self) -> int:
        """One pass (or the rest of a pass that failed); returns how many markets its listings showed.

        For a venue with :class:`venues.interface.StatusListings` (else :meth:`_discover_via_venue`):

        1. Complete listings (cursor paging) of each status of ``discovery_statuses`` ([] = the venue's). A failing
           page raises :class:`DiscoveryError` after applying only the pages already received; the next call resumes
           from that page's cursor. A listing never releases a market it did not show.
        2. Once every listing completed: held markets no listing showed are looked up by ticker (batches of 100,
           no status filter); only a look-up's answer releases them (:meth:`MarketRegistry.apply_lookup`). A
           failing batch is retried by the next call, the batches before it are not.
        """
        listings, registry = self._current_listings()
        if listings is None or registry is None:
            walk = self.venue.discovery(self.venue_config.rest_url, self._discovery_page)
            if discovery_kind(walk) != "walk":  # no discovery (status listings cannot happen here)
                return 0
            return await self._discover_via_venue(walk)  # type: ignore[arg-type]
        p = self._pass
        if p is None:
            registry.prune(time.time_ns())
            p = self._pass = _DiscoveryPass(listings.statuses(list(self.opts.discovery_statuses)))
        else:
            p.attempts += 1
            self.discovery_resumes += 1
            self._log.info(
                "discovery_resumed",
                attempt=p.attempts,
                status=p.statuses[p.index] if p.index < len(p.statuses) else "",
                cursor=p.cursor[:60],
                pages=p.pages,
                listed=len(p.seen),
                looked_up=p.looked_up,
            )
        while p.index < len(p.statuses):
            status = p.statuses[p.index]
            requested = time.time_ns()
            try:
                markets, cursor = await self._page(listings, listings.listing_url(status, p.cursor), "listing")
            except DiscoveryError as exc:
                if p.cursor and exc.status in (400, 404, 410):  # the venue no longer takes this cursor
                    self._log.warning("discovery_cursor_refused", status=status, http_status=exc.status)
                    p.cursor = ""
                raise
            self._apply(registry.apply_listing(markets, requested, p.seen))
            p.pages += 1
            if not cursor or not markets:
                p.index += 1
                p.cursor = ""
            else:
                p.cursor = cursor
        if p.missing is None:
            p.missing = registry.unlisted(p.seen, time.time_ns())
        while p.looked_up < len(p.missing):
            batch = p.missing[p.looked_up : p.looked_up + listings.lookup_batch]
            requested = time.time_ns()
            markets, _ = await self._page(listings, listings.lookup_url(batch), "lookup")
            changes = registry.apply_lookup(batch, markets, requested)
            p.released += len(changes.remove)
            self._apply(changes)
            p.looked_up += len(batch)
        self._pass = None
        self.discoveries += 1
        self._log.info(
            "discovery_done",
            listed=len(p.seen),
            held=len(registry),
            looked_up=len(p.missing),
            released=p.released,
            pages=p.pages,
            attempts=p.attempts,
        )
        return len(p.seen)

    async def _discover_via_venue(self, walk: Discovery) -> int:
        """One pass of the venue's own discovery (:meth:`venues.interface.Venue.discovery`): every page through the
        paced REST client, then hold the groups it lists and release held markets it no longer lists. A failing page
        raises before anything is released or published (the next pass starts over). The listed markets' reference
        data goes to the ``markets`` topic where it changed (:class:`ingest.listing_refs.ListingRefs`)."""
        pages = 0
        requested_ns = time.time_ns()  # the pass's start: its references are at least this fresh
        while (url := walk.next_url()) is not None:
            body = await self._get(url, "listing")
            try:
                walk.feed(body)
            except SchemaError as exc:
                raise DiscoveryError(f"GET {url}: bad body: {exc}") from None
            pages += 1
        groups = walk.groups()
        listed = {market for group in groups for market in group}
        self._publish_refs(self._listing_refs.changes(walk.refs(requested_ns), time.time_ns()))
        self.add_market_groups(groups)
        gone = [market for market in self.plan.conn_of if market not in listed]
        if gone:
            self.remove_markets(gone)
        self.discoveries += 1
        self._log.info(
            "discovery_done", listed=len(listed), held=len(self.plan.conn_of), released=len(gone), pages=pages
        )
        return len(listed)

    async def _discovery_step(self) -> float:
        try:
            await self.discover_once()
        except Exception:
            self.discovery_failures += 1
            m.DISCOVERY_ERRORS.labels(self.gid).inc()
            raise
        return self.opts.discovery_interval_s

    async def _discovery_loop(self) -> None:
        await self._keep_running(
            "discovery",
            self._discovery_step,
            expected=(DiscoveryError,),
            initial=self.opts.backoff_initial_s,
            maximum=self.opts.backoff_max_s,
        )

    async def _refresh_step(self) -> float:
        """Reference data of markets named by lifecycle events, fetched over REST in look-up batches."""
        listings, registry = self._current_listings()
        while self._refresh and listings is not None and registry is not None:
            batch = [self._refresh.pop() for _ in range(min(listings.lookup_batch, len(self._refresh)))]
            requested = time.time_ns()
            try:
                markets, _ = await self._page(listings, listings.lookup_url(batch), "refresh")
            except BaseException:
                self._refresh.update(batch)
                m.DISCOVERY_ERRORS.labels(self.gid).inc()
                raise
            self._apply(registry.apply_listing(markets, requested))
        return 1.0

    async def _refresh_loop(self) -> None:
        await asyncio.sleep(1.0)
        await self._keep_running(
            "refresh",
            self._refresh_step,
            expected=(DiscoveryError,),
            initial=self.opts.backoff_initial_s,
            maximum=self.opts.backoff_max_s,
        )

    # -- background tasks ----------------------------------------------------------------------
    async def _keep_running(
        self,
        task: str,
        step: Callable[[], Awaitable[float]],
        *,
        expected: tuple[type[Exception], ...] = (),
        initial: float,
        maximum: float,
        fatal_after_s: float | None = None,
    ) -> None:
        """Call ``step`` until cancelled; it returns the pause before its next call.

        A failed call is counted and logged as one line (``expected`` failures at warning level, others at error
        level with the innermost frame), then retried after a backoff. With ``fatal_after_s``, failing that long
        without one success fails the gatherer (see module docstring) and ends this loop."""
        delays = backoff(initial, maximum)
        failing_since: float | None = None
        failures = 0
        while True:
            try:
                pause = await step()
            except Exception as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                failures += 1
                failing_s = now - failing_since
                delay = next(delays)
                m.TASK_FAILURES.labels(self.gid, task).inc()
                fields: dict[str, Any] = {
                    "task": task,
                    "error_type": type(exc).__name__,
                    "error": str(exc)[:300],
                    "failures": failures,
                    "failing_s": round(failing_s, 1),
                    "retry_s": round(delay, 2),
                }
                if isinstance(exc, expected):
                    self._log.warning("task_failed", **fields)
                else:
                    self._log.error("task_failed", **fields, where=_innermost(exc))
                if fatal_after_s is not None and failing_s >= fatal_after_s:
                    self._fail(f"{task} failing for {failing_s:.0f} s: {type(exc).__name__}: {str(exc)[:200]}")
                    return
                await asyncio.sleep(delay)
                continue
            if failing_since is not None:
                self._log.info("task_recovered", task=task, failures=failures)
                failing_since = None
                failures = 0
                delays = backoff(initial, maximum)
            await sleep_on_ticks(pause)  # on the grid the other periodic tasks wake on (ingest.ticks)

    def _fail(self, reason: str) -> None:
        """Give up: unhealthy from now on; run() returns and the CLI exits with status 3."""
        if self.failure is None:
            self.failure = reason
            self._log.error("gatherer_failed", reason=reason[:500])

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            why = "cancelled"
        elif (exc := task.exception()) is not None:
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            why = "returned"
        self._log.error("gatherer_task_ended", task=task.get_name(), why=why)
        self._fail(f"task {task.get_name()} ended: {why}")

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Wait for ``stop``; meanwhile any task that ends (they all run until shutdown) fails the gatherer."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stopped.done() and self.failure is None:
                ended = next((t for t in self._tasks if t.done()), None)
                if ended is not None:
                    self._task_ended(ended)
                    break
                refused = self.auth_refusals.verdict(time.monotonic(), any(c.up for c in self.connections))
                if refused is not None:
                    self.auth_failure = refused
                    self._fail(refused)
                    break
                await sleep_on_ticks(SUPERVISE_S, until=stopped)
        finally:
            stopped.cancel()

    # -- housekeeping --------------------------------------------------------------------------
    async def _service_step(self) -> float:
        error: Exception | None = None
        try:
            self.producer.service()
        except Exception as exc:  # metrics still sync below, so the failure shows
            error = exc
        dropped = self.producer.spool.dropped
        now = time.monotonic()
        if dropped != self._drops_seen:
            self._drops_seen = dropped
            self._last_drop = now
        if now - self._last_sync >= 1.0:
            self._last_sync = now
            self.sync_metrics()
        if error is not None:
            raise error
        return SERVICE_SPOOLING_S if self.producer.spooling else SERVICE_S

    async def _service_loop(self) -> None:
        await self._keep_running(
            "service",
            self._service_step,
            initial=0.05,
            maximum=2.0,
            fatal_after_s=self.opts.task_failure_limit_s,
        )

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
        for how in _LIFECYCLE_KEYS:  # the venue's lifecycle fallbacks (a venue without them has none)
            current[f"lc:{how}"] = getattr(s, f"lifecycle_{how}", 0)
            counters[f"lc:{how}"] = functools.partial(m.LIFECYCLE_KEYS.labels, gid, how)
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
        ``silence_timeout_s`` without a message it is probed (:meth:`VenueSession.probe`); a probe unanswered
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

    async def _watchdog_step(self) -> float:
        """Times the sessions (placing snapshots, keying stalled lifecycle streams) and watches for silence."""
        now = time.time_ns()
        # (connections that are down too: copies their ended subscriptions still hold leave when due)
        release_in_due_order([conn.session for conn in self.connections], now)
        for conn in self.connections:
            if not conn.up:
                continue
            conn.session.tick(now)
            if getattr(conn.session, "needs_reconnect", False):  # the session's own verdict (e.g. heartbeat unanswered)
                self._log.warning("ws_session_reconnect", conn=conn.session.conn_id)
                await conn.kill("session")
                continue
            verdict = self._silence_verdict(conn, now)
            if verdict == "probe":
                if conn.session.probe(now):
                    conn.poke()
            elif verdict:
                self._log.warning("ws_silent_reconnect", conn=conn.session.conn_id, reason=verdict)
                await conn.kill(verdict.split(":")[0])
        return 0.25

    async def _watchdog(self) -> None:
        await self._keep_running(
            "watchdog",
            self._watchdog_step,
            initial=0.25,
            maximum=2.0,
            fatal_after_s=self.opts.task_failure_limit_s,
        )

    async def _broker_loop(self) -> None:
        await self._keep_running(
            "broker", self.watch.step, initial=0.25, maximum=2.0, fatal_after_s=self.opts.task_failure_limit_s
        )

    def healthy(self) -> bool:
        """Capturing everything right now: running, not failed, no frame dropped lately, a connection up."""
        if not self.running or self.failure is not None:
            return False
        if time.monotonic() - self._last_drop < self.opts.unhealthy_after_drop_s:
            return False
        return any(c.up for c in self.connections)

    # -- run -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or the gatherer fails (``failure``), then close connections, flush."""
        self.running = True
        self._loop = asyncio.get_running_loop()
        self._tasks += [c.start() for c in self.connections if c.task is None]  # added before run()
        # started by _connection() now that running is set; the lifecycle channel always rides two connections (the
        # second may hold no market), so one connection dropping leaves the stream running on the other
        self._connection(max(0, LIFECYCLE_CONNECTIONS - 1) if self.venue.lifecycle_channel else 0)
        self._tasks.append(asyncio.create_task(self._service_loop(), name="gather-service"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name="gather-watchdog"))
        self._tasks.append(asyncio.create_task(self._broker_loop(), name="gather-broker"))
        if self.discover:
            self._tasks.append(asyncio.create_task(self._discovery_loop(), name="gather-discovery"))
            self._tasks.append(asyncio.create_task(self._refresh_loop(), name="gather-refresh"))
        self._log.info("gatherer_started", ws_url=self.venue_config.ws_url, channels=self.channels)
        try:
            await self._supervise(stop)
        finally:
            await self.shutdown()

    async def shutdown(self, flush_timeout: float = 10.0) -> None:
        self.running = False
        self.read_pacer.stop()  # a paused socket would hold the venue's close frame back
        await asyncio.gather(*(c.stop() for c in self.connections), return_exceptions=True)
        now = time.time_ns()
        # copies keyed and held back go first, in due order across the connections (ingest.held_order)
        release_in_due_order([c.session for c in self.connections], 2**63 - 1)
        for c in self.connections:  # frames still waiting for their key or position go out before the producer closes
            c.session.flush(now)
        self._loop = None  # from here on frames go straight to the producer (closed in another thread below)
        self._release_held()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        try:
            await asyncio.to_thread(self.producer.close, flush_timeout)
        except Exception as exc:
            self._fail(f"producer close: {type(exc).__name__}: {str(exc)[:200]}")
        self.sync_metrics()
        self._log.info(
            "gatherer_stopped",
            acked=self.producer.acked,
            spooled=len(self.producer.spool),
            dropped=self.producer.spool.dropped,
            failure=self.failure,
        )


def _innermost(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (one log field instead of a multi-line traceback)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
