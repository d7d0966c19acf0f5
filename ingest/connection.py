"""I/O side of one venue WebSocket, shared by both clients: the reconnect loop (exponential backoff with jitter,
reset after a stable connection), the up/down state and ``on_reconnect``. A client subclass opens the socket with
the signed upgrade headers, feeds every complete message with its receive time to the sans-I/O
:class:`venues.interface.VenueSession`, writes its commands and answers pings:
:mod:`ingest.ws_picows` (``gather.ws_client = "picows"``, the default) or :mod:`ingest.ws_websockets`.
The silence watchdog lives in :mod:`ingest.gatherer` and calls :meth:`Connection.kill`. ``wss://`` URLs use
``ssl_context`` (:func:`ingest.tls.client_context`: ``venue.ca_file`` or the system store); a certificate it does
not trust is reported once (:func:`ingest.tls.report_untrusted`) and retried like any failed connect.
An upgrade the venue refuses (HTTP 401/403) is reported to the gatherer's
:class:`ingest.auth_refusals.AuthRefusals`, an opened one too: that decides when refused credentials make the
gatherer give up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

from ingest.auth_refusals import REFUSED_STATUSES, AuthRefusals, http_status, refusal_detail
from ingest.backoff import backoff
from ingest.read_pacer import ReadPacer
from ingest.tls import client_context, report_untrusted, untrusted
from mdpipe.logging import get_logger
from venues.interface import VenueSession

__all__ = ["CLIENTS", "MAX_MESSAGE", "Connection", "connection_class"]

log = get_logger(__name__)

CLIENTS = ("picows", "websockets")
MAX_MESSAGE = 64 << 20  # the venue documents messages up to 64 MiB
OPEN_TIMEOUT_S = 15.0
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
_STABLE_S = 10.0  # a connection that lived this long resets the backoff


class Connection:
    """Keeps one session connected until :meth:`stop`; subclasses implement one connection's life."""

    client = ""

    def __init__(
        self,
        session: VenueSession,
        url: str,
        headers: Callable[[], dict[str, str]],
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_reconnect: Callable[[str], None] | None = None,
        auth_refusals: AuthRefusals | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str = "",
        on_read: Callable[[], None] | None = None,
        read_pacer: ReadPacer | None = None,
    ) -> None:
        self.session = session
        self.url = url
        secure = url.startswith("wss://")
        self.ssl_context = (ssl_context or client_context(ca_file)) if secure else None
        self.ca_file = ca_file  # named in the untrusted-certificate report
        self.headers = headers
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_reconnect = on_reconnect
        self.auth_refusals = auth_refusals
        self.upgrade_error: BaseException | None = None  # why the last connect failed (_connect_failed)
        self.on_read = on_read or _nothing  # called after the messages of one socket read were handled
        # picows: pauses the socket after each read (gather.read_window_ms); websockets reads its socket itself
        self.read_pacer = read_pacer if read_pacer is not None and read_pacer.enabled else None
        self.up = False
        self.connected_ns = 0
        self.reconnects = 0
        self.kill_reason = ""
        self._opened = 0.0
        self._stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"ws-conn-{self.session.conn_id}")
        return self.task

    def poke(self) -> None:
        """The session has commands to send."""
        raise NotImplementedError

    async def _connect_and_pump(self) -> str:
        """Connect, run until the socket is gone; returns why (expected failures are returned, not raised)."""
        raise NotImplementedError

    async def kill(self, reason: str) -> None:
        """Drop the current socket (the run loop reconnects)."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Close the current socket cleanly (close handshake, bounded wait)."""
        raise NotImplementedError

    def _connect_failed(self, exc: BaseException) -> str:
        """Why a connect attempt failed (returned by ``_connect_and_pump``); an untrusted venue certificate is
        reported once, as one clear line. Kept in ``upgrade_error``: a refused upgrade's HTTP status counts."""
        self.upgrade_error = exc
        error = untrusted(exc)
        if error is not None:
            report_untrusted(self.url, self.ca_file, error, self.client)
            return f"tls: venue certificate not trusted ({getattr(error, 'verify_message', '') or error})"
        return f"{type(exc).__name__}: {exc}"

    def _opened_now(self) -> None:
        """The subclass's socket is open: state up, session subscribes afresh."""
        self._opened = time.monotonic()
        self.up = True
        self.kill_reason = ""
        self.connected_ns = time.time_ns()
        self.session.connected(self.connected_ns)
        if self.auth_refusals is not None:
            self.auth_refusals.accepted("websocket")
        log.info("ws_connected", conn=self.session.conn_id, markets=len(self.session.markets), client=self.client)

    async def run(self) -> None:
        session = self.session
        delays = backoff(self.backoff_initial, self.backoff_max)
        while not self._stopping:
            self._opened = 0.0
            self.upgrade_error = None
            try:
                reason = await self._connect_and_pump()
            except Exception as exc:  # a bug or unforeseen failure must not end the connection
                # silently (the gatherer does not watch this task): log it and reconnect with backoff
                log.exception("ws_connection_failed", conn=session.conn_id, client=self.client)
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                self.up = False
                session.disconnected(time.time_ns())
            if self._stopping:
                break
            opened = self._opened
            status = None if opened else http_status(self.upgrade_error)
            if status is not None and status in REFUSED_STATUSES and self.auth_refusals is not None:
                self.auth_refusals.refused("websocket", time.monotonic(), refusal_detail(self.upgrade_error, status))
            if opened and time.monotonic() - opened > _STABLE_S:
                delays = backoff(self.backoff_initial, self.backoff_max)
            delay = next(delays)
            self.reconnects += 1
            if self.on_reconnect is not None:
                try:
                    self.on_reconnect(self.kill_reason or ("error" if not opened else "closed"))
                except Exception:  # a failing callback must not stop the reconnects
                    log.exception("ws_on_reconnect_failed", conn=session.conn_id)
            log.warning("ws_reconnecting", conn=session.conn_id, reason=reason, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(Exception):
            await self._close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _nothing() -> None:
    pass


def connection_class(client: str) -> type[Connection]:
    """The :class:`Connection` implementation named by ``gather.ws_client``."""
    if client == "picows":
        from ingest.ws_picows import PicowsConnection

        return PicowsConnection
    if client == "websockets":
        from ingest.ws_websockets import WebsocketsConnection

        return WebsocketsConnection
    raise ValueError(f"unknown WebSocket client {client!r}; accepted: {', '.join(CLIENTS)}")
