"""picows I/O for one venue WebSocket (``gather.ws_client = "picows"``, the default).

picows (Cython) parses frames straight out of its read buffer and calls :meth:`_Listener.on_ws_frame` for each,
synchronously, from the event loop's read callback: no queue, no task switch per message. After the last complete
frame of a socket read (``frame.last_in_buffer``) the listener calls the connection's ``on_read``. The listener
assembles fragmented messages (first TEXT/BINARY frame without FIN, CONTINUATION frames until FIN) under the same
64 MiB message limit as the websockets client, hands every complete message with its receive time to the sans-I/O
session, writes the session's commands right away, answers a venue CLOSE by echoing it and disconnecting. picows
answers pings itself and pings the venue after 20 s without data (no pong in 20 s: disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSError,
    WSFrame,
    WSInvalidURL,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    ws_connect,
)

from ingest.connection import MAX_MESSAGE, OPEN_TIMEOUT_S, PING_INTERVAL_S, PING_TIMEOUT_S, Connection
from ingest.read_pacer import socket_fd, socket_transport
from mdpipe.logging import get_logger

__all__ = ["PicowsConnection"]

log = get_logger(__name__)

# picows logs every connect and disconnect at INFO through stdlib logging; ours are the structured ws_* events.
_picows_log = logging.getLogger("ingest.ws_picows.picows")
_picows_log.setLevel(logging.WARNING)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_NO_STATUS = 1005  # RFC 6455: a CLOSE frame without a status code (what websockets reports)


class _Listener(WSListener):
    """Frames of one socket -> complete messages -> ``session.receive``."""

    def __init__(self, conn: PicowsConnection) -> None:
        super().__init__()
        self.conn = conn
        self.session = conn.session
        self.receive = conn.session.receive
        self.on_read = conn.on_read
        self.pacer = conn.read_pacer  # None unless gather.read_window_ms > 0
        self.socket: Any = None  # the transport reading the socket (paced after each read)
        self.fd = -1  # its file descriptor (is more waiting already?)
        self.outbox = conn.session.outbox  # truthy when the session has commands to write (cheaper than has_output)
        self.opened = False
        self.close_code: int | None = None
        self._parts: list[bytes] | None = None  # a fragmented message in progress
        self._size = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.opened = True
        if self.pacer is not None:
            self.socket = socket_transport(transport.underlying_transport)
            self.fd = socket_fd(transport.underlying_transport)
        self.conn._on_open(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.conn.transport is transport:
            self.conn.transport = None  # nothing more is written to it (poke, stop, kill)
        if self.pacer is not None and self.socket is not None:
            self.pacer.forget(self.socket)

    def _read_done(self) -> None:
        """The last complete frame of one socket read was handled."""
        self.on_read()
        if self.pacer is not None and self.socket is not None:
            self.pacer.after_read(self.socket, self.fd)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if transport.is_close_frame_sent and not self.conn.closing:
                return  # a protocol error whose frame picows still hands over: deliver nothing
            if self._parts is not None:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "expected a continuation frame")
            if frame.fin:
                self.receive(frame.get_payload_as_bytes(), time.time_ns())
                if self.outbox:
                    self.conn._flush(transport)
                if frame.last_in_buffer:  # the last complete frame of this socket read
                    self._read_done()
                return
            self._parts = [frame.get_payload_as_bytes()]
            self._size = frame.payload_size
            self._check_size()
            return
        elif kind is _CONTINUATION:
            parts = self._parts
            if transport.is_close_frame_sent and not self.conn.closing:
                return
            if parts is None:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
            parts.append(frame.get_payload_as_bytes())
            self._size += frame.payload_size
            self._check_size()
            if not frame.fin:
                return
            self._parts = None
            self.receive(b"".join(parts), time.time_ns())
            if self.outbox:
                self.conn._flush(transport)
            if frame.last_in_buffer:
                self._read_done()
            return
        elif kind is _CLOSE:
            code = frame.get_close_code()
            self.close_code = int(code) if frame.payload_size >= 2 else _NO_STATUS
            if not transport.is_close_frame_sent:
                if frame.payload_size >= 2:
                    transport.send_close(code, frame.get_close_message())
                else:
                    transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        elif frame.last_in_buffer:  # PING (answered by picows) / PONG (picows' own keepalive)
            self._read_done()

    def _check_size(self) -> None:
        if self._size > MAX_MESSAGE:
            self._parts = None
            raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, f"message over {MAX_MESSAGE} bytes")


class PicowsConnection(Connection):
    """Keeps one session connected over picows until :meth:`stop` (reconnect loop in the base class)."""

    client = "picows"

    transport: WSTransport | None = None
    # stop() sent our close frame: messages the venue wrote before it saw that frame still arrive, and the venue
    # counts them as delivered, so they reach the session until the venue's close frame ends the socket
    closing = False

    def _flush(self, transport: WSTransport) -> None:
        if transport.is_close_frame_sent:
            return  # nothing may follow our close frame (messages still arrive while stop() waits for the venue's)
        for message in self.session.data_to_send():
            transport.send(_TEXT, message)

    def _on_open(self, transport: WSTransport) -> None:
        self.transport = transport
        self._opened_now()
        self._flush(transport)

    def poke(self) -> None:
        transport = self.transport
        if transport is not None and self.up and self.session.has_output:
            self._flush(transport)

    async def _connect_and_pump(self) -> str:
        listener: _Listener | None = None

        def factory() -> _Listener:
            nonlocal listener
            listener = _Listener(self)
            return listener

        try:
            transport, _ = await asyncio.wait_for(
                ws_connect(
                    factory,
                    self.url,
                    extra_headers=self.headers(),
                    ssl_context=self.ssl_context,
                    websocket_handshake_timeout=OPEN_TIMEOUT_S,
                    max_frame_size=MAX_MESSAGE,
                    enable_auto_ping=True,
                    auto_ping_idle_timeout=PING_INTERVAL_S,
                    auto_ping_reply_timeout=PING_TIMEOUT_S,
                    auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
                    logger_name=_picows_log,
                    read_buffer_init_size=64 * 1024,
                    # asyncio's own transport: with aiofastnet's, subscribing 1M markets over 143 sockets took 75-86 s
                    # instead of 57 s (bench-gatherer --scale), and CPU per frame was no lower.
                    use_aiofastnet=False,
                ),
                OPEN_TIMEOUT_S,
            )
        except (OSError, TimeoutError, WSError, WSInvalidURL) as exc:
            return self._connect_failed(exc)
        try:
            if listener is None or not listener.opened:
                transport.disconnect(graceful=False)
                return "ConnectionClosed: closed during the handshake"
            try:
                await transport.wait_disconnected()
            except WSProtocolError as exc:
                return self.kill_reason or f"closed code={int(exc.code)} ({exc.args[1] if len(exc.args) > 1 else ''})"
            except Exception as exc:  # a failure in the session: drop this socket, reconnect
                log.exception("ws_receive_failed", conn=self.session.conn_id)
                return f"{type(exc).__name__}: {exc}"
            return self.kill_reason or f"closed code={listener.close_code}"
        finally:
            self.transport = None
            if not transport.is_disconnected:
                transport.disconnect(graceful=False)

    async def kill(self, reason: str) -> None:
        """Drop the current socket (the run loop reconnects)."""
        transport = self.transport
        if transport is not None:
            self.kill_reason = reason
            transport.disconnect(graceful=False)

    async def _close(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.closing = True
        with contextlib.suppress(Exception):
            transport.send_close(WSCloseCode.OK)
            await asyncio.wait_for(transport.wait_disconnected(), 2.0)
        if not transport.is_disconnected:
            transport.disconnect(graceful=False)
