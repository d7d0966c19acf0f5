"""I/O layer of the emulator: one asyncio port serving a venue's REST API, its WebSocket feed and the admin API.

The venue's protocol comes from its emulator profile (:class:`venues.interface.EmulatorProfile`): one server
session per connection (sans I/O) on the profile's WebSocket path, its REST routes under its REST base, and the
headers of its signed upgrade. ``websockets.asyncio.server.serve`` handles the upgrade; ``process_request`` answers
REST GETs and ``/_sim/stats``, checks auth (HTTP 401) and the refuse fault (HTTP 503). POSTs to ``/_sim/...`` are
read before websockets sees them (websockets only speaks GET). Market data frames are written straight
to the transport in one batch per connection per tick (server frames are unmasked, no compression), with
heartbeat pings, a pong deadline, a bounded send buffer (the session's ``overflowing``) and the effects of
:mod:`venue_sim.faults`.

Each connection keeps its *position*: the id of the last event of the last batch written to its socket (a batch
held by the ``delay`` fault counts when released). Once the venue decides to close a connection (the ``close`` fault)
nothing more is written to it, although its close handshake starts a moment later: held batches due after that are
dropped, never released. With a recorder, connections are recorded when accepted
(``ConnOpened``, with the client's User-Agent) and when they end (``ConnClosed`` and the end of every sid, at the
position); a session that can hold the records of its replies (``hold_reply_records``: the snapshots it sends) has
them written when the replies reach the socket, and dropped with them.

REST requests pass the rate limit of :mod:`venue_sim.rest_limit` when one is set (429, optionally with
``Retry-After``; a client is its key id header, else its address) and are logged in ``rest_log`` (time, target,
status, client); the ``failpage`` fault answers the next N listing pages that carry a cursor with HTTP 503 (a
listing failing half way; the venue's REST handler asks :meth:`SimServer.fail_page`). With an ``ssl_context`` the
port speaks TLS only (``https://`` and ``wss://``).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConcurrencyError, ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from mdpipe.logging import get_logger
from venue_sim.book import Books
from venue_sim.faults import FaultSpec
from venue_sim.keys import verify
from venue_sim.load import Event
from venue_sim.markets import MarketTable
from venue_sim.record import ConnClosed, ConnOpened
from venue_sim.recorder import Recorder
from venue_sim.rest_limit import RestLimiter, RetryAfterForm

__all__ = ["AdminHandler", "RestHit", "ServerSettings", "SimConnection", "SimServer", "frame_text"]

log = get_logger(__name__)

MALFORMED = b'{"type":"orderbook_delta","sid":1,"seq":'
_HDR = [bytes((0x81, n)) for n in range(126)]

AdminHandler = Callable[[str, str, dict[str, Any]], Awaitable[tuple[int, Any]]]


class RestHit(NamedTuple):
    """One REST request as the venue answered it (``SimServer.rest_log``)."""

    at: float  # monotonic
    wall: float  # Unix time
    target: str  # path and query
    status: int
    client: str  # the venue's key id header, else the client's address
    retry_after: str  # the Retry-After header sent ("" = none)


def frame_text(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        return _HDR[n] + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _frames(messages: list[str]) -> bytes:
    parts: list[bytes] = []
    hdr = _HDR
    for text in messages:
        data = text.encode()
        n = len(data)
        if n < 126:
            parts.append(hdr[n])
        elif n < 65536:
            parts.append(b"\x81\x7e" + n.to_bytes(2, "big"))
        else:
            parts.append(b"\x81\x7f" + n.to_bytes(8, "big"))
        parts.append(data)
    return b"".join(parts)


class ServerSettings:
    """What the I/O layer needs from the options (kept plain so app.py owns the public option names)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: bool = False,
        public_key: rsa.RSAPublicKey | None = None,
        key_id: str = "",
        max_skew_s: float = 300.0,
        heartbeat_s: float = 10.0,
        pong_timeout_s: float = 20.0,
        send_buffer_bytes: int = 16 << 20,
        ssl_context: ssl.SSLContext | None = None,
        rest_rate: float = 0.0,
        rest_burst: float = 0.0,
        rest_retry_after: RetryAfterForm = "none",
    ) -> None:
        self.host = host
        self.port = port
        self.auth = auth
        self.public_key = public_key
        self.key_id = key_id
        self.max_skew_s = max_skew_s
        self.heartbeat_s = heartbeat_s
        self.pong_timeout_s = pong_timeout_s
        self.send_buffer_bytes = send_buffer_bytes
        self.ssl_context = ssl_context
        self.rest_rate = rest_rate
        self.rest_burst = rest_burst
        self.rest_retry_after = rest_retry_after


class SimConnection:
    """One accepted WebSocket: protocol session, counters, fault state."""

    def __init__(self, conn_id: int, ws: ServerConnection, session: Any, position: int = 0) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.session = session
        self.connected = time.time()
        self.position = position  # last event id of the last batch written to the socket
        self.close_reason = ""  # why the venue ended it ("" = the client did, or the socket was lost)
        self.frames_sent = 0
        self.bytes_sent = 0
        self.commands = 0
        self.freeze_until = 0.0
        self.delay_s = 0.0
        self.delay_until = 0.0
        # (release at, frames, position they bring, records of the replies among the frames)
        self.delayed: deque[tuple[float, bytes, int, list[Any]]] = deque()
        self.delayed_bytes = 0
        self.delayed_batches = 0  # batches held back by the delay fault
        self.pending_raw: list[bytes] = []
        # the session's records of its replies, taken with its messages (None: it writes its record itself)
        self.take_reply_records: Callable[[], list[Any]] | None = getattr(session, "take_reply_records", None)

    def writable(self) -> bool:
        """Open, and not being closed by the venue: once a close is decided nothing more is written, so the
        recorded position at the close is where the venue stopped, not wherever the close handshake began."""
        ws = self.ws
        return not self.close_reason and ws.state is State.OPEN and not ws.transport.is_closing()

    def stats(self) -> dict[str, Any]:
        s = self.session
        return {
            "conn_id": self.conn_id,
            "remote": str(self.ws.remote_address),
            "connected_s": round(time.time() - self.connected, 3),
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "data_messages": s.data_messages,
            "suppressed": s.suppressed,
            "subscriptions": len(getattr(s, "subs", ())),  # a venue's session may keep no subscription table
            "overflowed_sids": getattr(s, "overflowed_sids", 0),
            "commands": self.commands,
            "frozen": s.frozen,
            "delayed_batches": self.delayed_batches,
            "redelivered": s.redelivered,
            "position": self.position,
        }


class _AdminAwareConnection(ServerConnection):
    """Reads plain HTTP POSTs (admin API) that websockets' GET-only handshake parser would reject."""

    _post_buf: bytearray | None = None

    def data_received(self, data: bytes) -> None:
        if self._post_buf is None and self.request is None and data[:5] == b"POST ":
            self._post_buf = bytearray()
        if self._post_buf is None:
            super().data_received(data)
            return
        self._post_buf += data
        head_end = self._post_buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self._post_buf[:head_end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        body = bytes(self._post_buf[head_end + 4 : head_end + 4 + length])
        if len(body) < length:
            return
        target = head.split(" ", 2)[1] if head.count(" ") >= 2 else "/"
        self._post_buf = bytearray()  # ignore anything after the request
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        sim.spawn(self._answer_post(sim, target, body))

    async def _answer_post(self, sim: SimServer, target: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("JSON object expected")
            status, obj = await sim.admin("POST", urlsplit(target).path, payload)
        except ValueError as exc:
            status, obj = 400, {"error": str(exc)}
        except Exception as exc:  # an admin bug must not kill the server
            log.exception("admin_failed", target=target)
            status, obj = 500, {"error": repr(exc)}
        data = json.dumps(obj).encode()
        reason = "OK" if status == 200 else "Error"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\nDate: {email.utils.formatdate(usegmt=True)}\r\n\r\n"
        ).encode()
        self.transport.write(head + data)
        self.transport.close()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def _json_response(status: int, obj: Any, extra: dict[str, str] | None = None) -> Response:
    body = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/json"),
            *(extra or {}).items(),
        ]
    )
    return Response(status, _REASONS.get(status, "Error"), headers, body)


class SimServer:
    """The listening socket and every live connection."""

    def __init__(
        self,
        settings: ServerSettings,
        markets: MarketTable,
        books: Books,
        admin: AdminHandler,
        *,
        last_id: Callable[[], int] = lambda: 0,
        venue_ms: Callable[[], int] | None = None,
        recorder: Recorder | None = None,
        session_factory: Callable[[int], Any] | None = None,
        ws_path: str = "",
        rest_routes: dict[str, Callable[[dict[str, str]], bytes]] | None = None,
        rest_base: str = "",
        rest_handler: Callable[[str, dict[str, str], Any], tuple[int, Any] | None] | None = None,
        auth_headers: tuple[str, ...] = (),
    ) -> None:
        if session_factory is None or not ws_path:
            raise ValueError("the server hosts a venue's emulator profile: session_factory and ws_path are required")
        self.settings = settings
        # The venue's protocol profile (venues.interface.EmulatorProfile): a factory of server sessions (sans I/O),
        # served on the venue's WebSocket path; its REST routes (exact paths: query -> JSON body), its other REST
        # paths under rest_base (rest_handler), and the headers of its signed upgrade.
        self.session_factory = session_factory
        self.ws_path = ws_path
        self.rest_routes = rest_routes or {}
        self.rest_base = rest_base
        self.rest_handler = rest_handler
        self.auth_headers = auth_headers
        self.markets = markets
        self.books = books
        self._admin = admin
        self.last_id = last_id  # id of the last generated event
        self.venue_ms = venue_ms or (lambda: int(time.time() * 1000))  # the venue clock REST lag is judged by
        self.recorder = recorder
        self.connections: dict[int, SimConnection] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self.refuse_until = 0.0
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self.auth_failures = 0
        self.closed_by_heartbeat = 0
        self.redelivered_closed = 0  # re-delivered messages of connections that ended
        self._tasks: set[asyncio.Future[Any]] = set()
        self.rest_limiter = RestLimiter(settings.rest_rate, settings.rest_burst, settings.rest_retry_after)
        self.rest_log: deque[RestHit] = deque(maxlen=100_000)
        self.rest_requests = 0
        self.fail_pages = 0  # listing pages with a cursor still to fail (failpage fault)
        self.failed_pages = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            create_connection=_AdminAwareConnection,
            compression=None,
            ping_interval=None,
            ping_timeout=None,
            max_size=64 << 20,
            max_queue=64,
            ssl=self.settings.ssl_context,
        )
        self._server.sim = self  # type: ignore[attr-defined]
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def admin(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        return await self._admin(method, path, payload)

    # -- HTTP ----------------------------------------------------------------------------------
    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path == self.ws_path:
            return self._check_upgrade(request)
        if path in self.rest_routes or (self.rest_handler is not None and path.startswith(f"{self.rest_base}/")):
            key_header = self.auth_headers[0] if self.auth_headers else ""
            who = (request.headers.get(key_header, "") if key_header else "") or str(conn.remote_address[0])
            response = self._rest(who, path, query)
            self.rest_requests += 1
            retry_after = response.headers.get("Retry-After", "")
            self.rest_log.append(
                RestHit(time.monotonic(), time.time(), request.path, response.status_code, who, retry_after)
            )
            return response
        if path.startswith("/_sim/"):
            status, obj = await self._admin("GET", path, query)
            return _json_response(status, obj)
        return _json_response(404, {"error": {"code": "not_found", "message": f"no route {path}"}})

    def _rest(self, who: str, path: str, query: dict[str, str]) -> Response:
        """One REST request of client ``who`` (its key id, else its address): rate limit, then the route."""
        limiter = self.rest_limiter
        if limiter.enabled:
            refused = limiter.check(who, time.monotonic(), time.time())
            if refused is not None:
                return _json_response(429, {"error": "too many requests"}, refused)
        try:
            route = self.rest_routes.get(path)
            if route is not None:
                return _json_response(200, route(query))
            answer = self.rest_handler(path, query, self) if self.rest_handler is not None else None
        except ValueError as exc:
            return _json_response(400, {"error": {"code": "bad_request", "message": str(exc)}})
        if answer is None:
            return _json_response(404, {"error": {"code": "not_found", "message": f"no route {path}"}})
        return _json_response(*answer)

    def fail_page(self, detail: str) -> bool:
        """The ``failpage`` fault, asked by a venue's REST handler for a listing page that carries a cursor: True
        (one armed page fewer) when this page must fail with HTTP 503."""
        if self.fail_pages <= 0:
            return False
        self.fail_pages -= 1
        self.failed_pages += 1
        log.info("fault_failpage", cursor=detail, left=self.fail_pages)
        return True

    def _check_upgrade(self, request: Request) -> Response | None:
        if time.monotonic() < self.refuse_until:
            self.refused += 1
            return _json_response(503, {"error": {"code": "unavailable", "message": "refusing connections"}})
        if not self.settings.auth:
            return None
        headers = request.headers
        # the venue's (key id, timestamp, signature) headers; a venue that signs nothing has none to send
        key_name, ts_name, sig_name = (*self.auth_headers, "", "", "")[:3]
        key = headers.get(key_name, "") if key_name else ""
        ts = headers.get(ts_name, "") if ts_name else ""
        sig = headers.get(sig_name, "") if sig_name else ""
        reason = ""
        if not key or not ts or not sig:
            reason = "missing authentication headers"
        elif self.settings.key_id and key != self.settings.key_id:
            reason = "unknown key"
        elif not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > self.settings.max_skew_s * 1000:
            reason = "bad timestamp"
        elif self.settings.public_key is None or not verify(self.settings.public_key, sig, ts, "GET", self.ws_path):
            reason = "bad signature"
        if reason:
            self.auth_failures += 1
            log.info("auth_refused", reason=reason)
            return _json_response(401, {"error": {"code": "authentication_error", "message": reason}})
        return None

    # -- WebSocket -----------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        conn_id = next(self._ids)
        rec = self.recorder
        session = self.session_factory(conn_id)
        if rec is not None and hasattr(session, "hold_reply_records"):
            session.hold_reply_records()
        sc = SimConnection(conn_id, ws, session, self.last_id())
        self.connections[conn_id] = sc
        self.accepted += 1
        client = ws.request.headers.get("User-Agent", "") if ws.request is not None else ""
        if rec is not None:
            rec.write(ConnOpened(conn_id, client, rec.now_ns(), sc.position))
        log.info("ws_connected", conn_id=conn_id, remote=str(ws.remote_address), client=client)
        heartbeat = asyncio.create_task(self._heartbeat(sc))
        try:
            async for message in ws:
                self.command(sc, message)
        except ConnectionClosed:
            pass
        finally:
            heartbeat.cancel()
            self.connections.pop(conn_id, None)
            self.redelivered_closed += session.redelivered
            reason = sc.close_reason or self._close_cause(ws)
            if rec is not None:
                session.end(sc.position)
                rec.write(ConnClosed(conn_id, rec.now_ns(), sc.position, reason))
            log.info("ws_closed", conn_id=conn_id, code=ws.close_code, frames=sc.frames_sent, reason=reason)

    def command(self, sc: SimConnection, message: str | bytes) -> None:
        """Handle one client message and write its reply; counted but ignored once the venue has decided to close the
        connection (its reply would never be written, so its ``Subscribed``/``SnapshotSent`` must not be recorded)."""
        sc.commands += 1
        if not sc.writable():
            return
        sc.session.receive_text(message)
        self.flush(sc)

    @staticmethod
    def _close_cause(ws: ServerConnection) -> str:
        proto = ws.protocol
        if proto.close_rcvd is None:
            return "lost"  # no close frame from the client: the socket went away
        return "client" if proto.close_rcvd_then_sent else "server"

    async def _heartbeat(self, sc: SimConnection) -> None:
        ws = sc.ws
        interval = self.settings.heartbeat_s
        while True:
            await asyncio.sleep(interval)
            try:
                waiter = await ws.ping(b"heartbeat")
            except (ConnectionClosed, ConcurrencyError):
                return
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.settings.pong_timeout_s)
            except TimeoutError:
                self.closed_by_heartbeat += 1
                sc.close_reason = sc.close_reason or "heartbeat_timeout"
                log.info("heartbeat_timeout", conn_id=sc.conn_id)
                ws.transport.abort()  # the peer is not reading: a close handshake would hang too
                return
            except ConnectionClosed:
                return

    def broadcast(self, events: list[Event]) -> None:
        """Queue ``events`` on every connection and write each connection's batch."""
        cap = self.settings.send_buffer_bytes
        upto = events[-1][0] if events else self.last_id()
        for sc in list(self.connections.values()):
            session = sc.session
            if not sc.writable():
                continue
            buffered = sc.ws.transport.get_write_buffer_size() + sc.delayed_bytes
            over = buffered > cap
            if over != session.overflowing:
                session.overflowing = over
                session.update_flags()
                if over:
                    log.warning("send_buffer_overflow", conn_id=sc.conn_id, buffered=buffered)
            session.deliver(events)
            self.flush(sc, upto)

    def flush(self, sc: SimConnection, upto: int | None = None) -> None:
        """Write what the session queued (through the delay fault when active); the connection has then been
        handed every event up to ``upto`` (default: the last generated)."""
        messages = sc.session.data_to_send()
        take = sc.take_reply_records
        records = take() if take is not None else []  # written with the frames that carry their replies
        ws = sc.ws
        if not sc.writable():
            return
        if upto is None:
            upto = self.last_id()
        if not messages and not sc.pending_raw:
            if sc.delayed:  # nothing new, but the last held batch now brings it up to here
                at, data, _, held = sc.delayed[-1]
                sc.delayed[-1] = (at, data, upto, held)
            else:
                sc.position = upto
            return
        data = _frames(messages)
        if sc.pending_raw:
            data += b"".join(sc.pending_raw)
            sc.pending_raw.clear()
        count = len(messages)
        now = time.monotonic()
        if now < sc.delay_until or sc.delayed:
            sc.delayed.append((now + sc.delay_s, data, upto, records))
            sc.delayed_bytes += len(data)
            sc.delayed_batches += 1
            asyncio.get_running_loop().call_later(sc.delay_s, self._release, sc)
            sc.frames_sent += count
            return
        ws.transport.write(data)
        sc.position = upto
        sc.frames_sent += count
        sc.bytes_sent += len(data)
        self._record(records)

    def _release(self, sc: SimConnection) -> None:
        now = time.monotonic()
        ws = sc.ws
        while sc.delayed and sc.delayed[0][0] <= now + 0.001:
            _, data, upto, records = sc.delayed.popleft()
            sc.delayed_bytes -= len(data)
            if sc.writable():
                ws.transport.write(data)
                sc.position = upto
                sc.bytes_sent += len(data)
                self._record(records)

    def _record(self, records: list[Any]) -> None:
        """Write the records of replies that have just reached a socket."""
        rec = self.recorder
        if rec is not None:
            for record in records:
                rec.write(record)

    # -- faults --------------------------------------------------------------------------------
    def apply_fault(self, fault: FaultSpec) -> int:
        loop = asyncio.get_running_loop()
        if fault.kind == "refuse":
            self.refuse_until = max(self.refuse_until, time.monotonic() + fault.seconds)
            log.info("fault_refuse", seconds=fault.seconds)
            return 0
        if fault.kind == "failpage":
            self.fail_pages += fault.count
            log.info("fault_failpage_armed", pages=self.fail_pages)
            return 0
        targets = [sc for cid, sc in self.connections.items() if fault.conn_id is None or cid == fault.conn_id]
        for sc in targets:
            log.info("fault", kind=fault.kind, conn_id=sc.conn_id, seconds=fault.seconds)
            session = sc.session
            if fault.kind == "drop":
                session.drop_next += fault.count
                session.update_flags()
            elif fault.kind == "close":
                sc.close_reason = sc.close_reason or "fault"
                self.spawn(sc.ws.close(1001, "closed by fault injection"))
            elif fault.kind == "freeze":
                sc.freeze_until = max(sc.freeze_until, time.monotonic() + fault.seconds)
                session.frozen = True
                session.update_flags()
                loop.call_later(fault.seconds, self._unfreeze, sc)
            elif fault.kind == "delay":
                sc.delay_s = fault.seconds
                sc.delay_until = time.monotonic() + fault.duration_s
            elif fault.kind == "malformed":
                sc.pending_raw.append(frame_text(MALFORMED))
                self.flush(sc)
            elif fault.kind == "redeliver":
                session.redeliver_next += fault.count
                session.update_flags()
        return len(targets)

    def _unfreeze(self, sc: SimConnection) -> None:
        if time.monotonic() + 0.001 >= sc.freeze_until:
            sc.session.frozen = False
            sc.session.update_flags()

    def redelivered(self) -> int:
        """Messages sent a second time with the same seq (redeliver fault), over all connections ever."""
        return self.redelivered_closed + sum(sc.session.redelivered for sc in self.connections.values())

    def stats(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "accepted": self.accepted,
            "refused": self.refused,
            "auth_failures": self.auth_failures,
            "closed_by_heartbeat": self.closed_by_heartbeat,
            "redelivered": self.redelivered(),
            "rest_requests": self.rest_requests,
            "rest_rate_limited": self.rest_limiter.rejected,
            "rest_failed_pages": self.failed_pages,
            "tls": self.settings.ssl_context is not None,
            "connections": [sc.stats() for sc in self.connections.values()],
        }
