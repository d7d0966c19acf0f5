"""websockets I/O for one venue WebSocket (``gather.ws_client = "websockets"``, the alternative to picows).

``websockets`` assembles fragmented messages, enforces the 64 MiB limit (close 1009), answers pings and pings the
venue every 20 s itself; this module pumps each message into the session and writes its commands from a writer
task woken by :meth:`WebsocketsConnection.poke`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingest.connection import MAX_MESSAGE, OPEN_TIMEOUT_S, PING_INTERVAL_S, PING_TIMEOUT_S, Connection
from mdpipe.logging import get_logger

__all__ = ["WebsocketsConnection"]

log = get_logger(__name__)


class WebsocketsConnection(Connection):
    """Keeps one session connected over websockets until :meth:`stop` (reconnect loop in the base class)."""

    client = "websockets"

    ws: ClientConnection | None = None
    _wake: asyncio.Event | None = None

    def poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _writer(self, ws: ClientConnection, wake: asyncio.Event) -> None:
        session = self.session
        while True:
            await wake.wait()
            wake.clear()
            for message in session.data_to_send():
                await ws.send(message, text=True)

    async def _connect_and_pump(self) -> str:
        session = self.session
        wake = self._wake = self._wake or asyncio.Event()
        headers = self.headers()
        user_agent = headers.pop("User-Agent", None)  # websockets sends its own: one header, ours
        try:
            async with connect(
                self.url,
                additional_headers=headers,
                user_agent_header=user_agent,
                max_size=MAX_MESSAGE,
                max_queue=256,
                compression=None,
                open_timeout=OPEN_TIMEOUT_S,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                ssl=self.ssl_context,
            ) as ws:
                self.ws = ws
                self._opened_now()
                wake.set()
                writer = asyncio.create_task(self._writer(ws, wake))
                try:
                    recv = ws.recv
                    receive = session.receive
                    on_read = self.on_read
                    now = time.time_ns
                    while True:
                        data = await recv(decode=False)
                        receive(data, now())
                        if session.has_output:
                            wake.set()
                        on_read()  # websockets hands over one message at a time
                finally:
                    writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await writer
        except websockets.ConnectionClosed as exc:
            return self.kill_reason or f"closed code={exc.rcvd.code if exc.rcvd else None}"
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            return self._connect_failed(exc)
        except Exception as exc:  # a failure in the session: drop this socket, reconnect
            log.exception("ws_receive_failed", conn=session.conn_id)
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.ws = None
        return "closed"

    async def kill(self, reason: str) -> None:
        ws = self.ws
        if ws is not None:
            self.kill_reason = reason
            ws.transport.abort()

    async def _close(self) -> None:
        ws = self.ws
        if ws is not None:
            await asyncio.wait_for(ws.close(), 2.0)
