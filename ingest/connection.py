"""I/O side of one venue WebSocket: connect (signed upgrade headers), pump messages into the session, write
its commands, reconnect with exponential backoff and jitter. Heartbeat pings from the venue are answered by
``websockets`` itself; the silence watchdog lives in :mod:`ingest.gatherer` and calls :meth:`Connection.kill`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingest.backoff import backoff
from ingest.venues.kalshi.protocol import KalshiSession
from mdpipe.logging import get_logger

__all__ = ["Connection"]

log = get_logger(__name__)

_STABLE_S = 10.0  # a connection that lived this long resets the backoff


class Connection:
    """Keeps one session connected until :meth:`stop`."""

    def __init__(
        self,
        session: KalshiSession,
        url: str,
        headers: Callable[[], dict[str, str]],
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.headers = headers
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_reconnect = on_reconnect
        self.ws: ClientConnection | None = None
        self.up = False
        self.connected_ns = 0
        self.reconnects = 0
        self.kill_reason = ""
        self._wake = asyncio.Event()
        self._stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"ws-conn-{self.session.conn_id}")
        return self.task

    def poke(self) -> None:
        """The session has commands to send."""
        self._wake.set()

    async def _writer(self, ws: ClientConnection) -> None:
        session = self.session
        while True:
            await self._wake.wait()
            self._wake.clear()
            for message in session.data_to_send():
                await ws.send(message, text=True)

    async def run(self) -> None:
        session = self.session
        delays = backoff(self.backoff_initial, self.backoff_max)
        while not self._stopping:
            reason = "closed"
            opened = 0.0
            try:
                async with connect(
                    self.url,
                    additional_headers=self.headers(),
                    max_size=64 << 20,  # the venue documents messages up to 64 MiB
                    max_queue=256,
                    compression=None,
                    open_timeout=15,
                    ping_interval=20,
                    ping_timeout=20,
                ) as ws:
                    opened = time.monotonic()
                    self.ws = ws
                    self.up = True
                    self.kill_reason = ""
                    self.connected_ns = time.time_ns()
                    session.connected()
                    log.info("ws_connected", conn=session.conn_id, markets=len(session.markets))
                    self._wake.set()
                    writer = asyncio.create_task(self._writer(ws))
                    try:
                        recv = ws.recv
                        receive = session.receive
                        wake = self._wake
                        now = time.time_ns
                        while True:
                            data = await recv(decode=False)
                            receive(data, now())
                            if session.has_output:
                                wake.set()
                    finally:
                        writer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await writer
            except websockets.ConnectionClosed as exc:
                reason = self.kill_reason or f"closed code={exc.rcvd.code if exc.rcvd else None}"
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.up = False
                self.ws = None
                session.disconnected()
            if self._stopping:
                break
            if opened and time.monotonic() - opened > _STABLE_S:
                delays = backoff(self.backoff_initial, self.backoff_max)
            delay = next(delays)
            self.reconnects += 1
            if self.on_reconnect is not None:
                self.on_reconnect(self.kill_reason or ("error" if not opened else "closed"))
            log.warning("ws_reconnecting", conn=session.conn_id, reason=reason, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def kill(self, reason: str) -> None:
        """Drop the current socket (the run loop reconnects)."""
        ws = self.ws
        if ws is not None:
            self.kill_reason = reason
            ws.transport.abort()

    async def stop(self) -> None:
        self._stopping = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
