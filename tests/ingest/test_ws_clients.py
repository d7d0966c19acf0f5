"""Both WebSocket clients (picows, websockets) against a real local websockets server: upgrade headers, commands
written, fragmented messages assembled, the 64 MiB limit (lowered here), pings, venue close, abort, kill, stop --
over ``ws://`` and over ``wss://`` (a server certificate from a CA generated for the test, trusted through
``venue.ca_file``). The clients are venue-neutral: they drive a session of a small protocol of the test's own
(:class:`LineSession`), so what is checked is the socket layer, not a venue's protocol."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ingest.connection import Connection, connection_class
from ingest.read_pacer import ReadPacer
from ingest.tls import client_context
from mdpipe.config import ConfigError, load_config
from schemas.raw import RawFrame, decode_raw, encode_raw
from venue_sim.tls import TlsFiles, make_certificates, server_context

CLIENTS = ["picows", "websockets"]
SCHEMES = ["ws", "wss"]
Script = Callable[[ServerConnection, int], Awaitable[None]]


def _trade(seq: int, pad: int = 0) -> str:
    """One market-data message of the test's protocol (see :class:`LineSession`)."""
    return json.dumps({"seq": seq, "id": f"t{seq}", "market": "M1", "pad": "x" * pad})


class LineSession:
    """The session (the duck type of :class:`venues.interface.VenueSession` the connections drive) of a small
    protocol: once connected it asks for its markets with ``{"cmd": "subscribe", "markets": [...]}`` (markets added
    while connected: one more such command); each message it receives (a JSON object with ``seq``, ``id`` and
    ``market``) becomes one raw frame whose payload is the message's bytes, verbatim, keyed ``t:<id>``."""

    def __init__(self, emit: Callable[[str, bytes], None], conn_id: int = 0) -> None:
        self.conn_id = conn_id
        self.markets: dict[str, None] = {}
        self.outbox: list[bytes] = []
        self.is_connected = False
        self._emit = emit

    def connected(self, now_ns: int = 0) -> None:
        self.is_connected = True
        if self.markets:
            self._subscribe(list(self.markets))

    def disconnected(self, now_ns: int = 0) -> None:
        self.is_connected = False
        self.outbox.clear()

    def receive(self, data: bytes, recv_ns: int) -> None:
        msg = json.loads(data)
        frame = RawFrame(
            venue="test-venue", gatherer="g1", conn=self.conn_id, sid=1, seq=msg["seq"], recv_ns=recv_ns,
            kind="trade", market=msg["market"], event_key=f"t:{msg['id']}", payload=bytes(data),
        )  # fmt: skip
        self._emit(frame.market, encode_raw(frame))

    def data_to_send(self) -> list[bytes]:
        out = self.outbox[:]
        self.outbox.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self.outbox)

    def tick(self, now_ns: int) -> None:
        return None

    def probe(self, now_ns: int) -> bool:
        return False

    def flush(self, now_ns: int) -> None:
        return None

    def add_markets(self, tickers: list[str]) -> None:
        new = [t for t in tickers if t not in self.markets]
        self.markets.update(dict.fromkeys(new))
        if new and self.is_connected:
            self._subscribe(new)

    def remove_markets(self, tickers: list[str]) -> None:
        for t in tickers:
            self.markets.pop(t, None)

    def _subscribe(self, markets: list[str]) -> None:
        self.outbox.append(json.dumps({"cmd": "subscribe", "markets": markets}).encode())


class Venue:
    """A websockets server that records what each connection sent and runs ``script`` on it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.headers: list[dict[str, str]] = []
        self.commands: list[list[dict[str, Any]]] = []
        self.close_codes: list[int | None] = []

    async def handler(self, ws: ServerConnection) -> None:
        n = len(self.headers)
        self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()} if ws.request else {})
        self.commands.append([])
        try:
            self.commands[n].append(json.loads(await ws.recv()))
            await self.script(ws, n)
            async for text in ws:
                self.commands[n].append(json.loads(text))
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.close_code)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=SCHEMES)
def tls(request: pytest.FixtureRequest, certificates: TlsFiles) -> TlsFiles | None:
    """Each test once over ws:// (None) and once over wss:// (the certificates to serve and trust)."""
    return certificates if request.param == "wss" else None


async def _run(
    client: str,
    script: Script,
    body: Callable[[Connection, Venue, list[RawFrame], list[str]], Awaitable[None]],
    tls: TlsFiles | None = None,
    read_pacer: ReadPacer | None = None,
    on_read: Callable[[], None] | None = None,
) -> Venue:
    venue = Venue(script)
    frames: list[RawFrame] = []
    reasons: list[str] = []
    server_ssl = server_context(tls) if tls is not None else None
    scheme = "wss" if tls is not None else "ws"
    async with serve(venue.handler, "127.0.0.1", 0, max_size=None, compression=None, ssl=server_ssl) as server:
        port = server.sockets[0].getsockname()[1]
        session = LineSession(emit=lambda market, value: frames.append(decode_raw(value)))
        session.add_markets(["M1"])
        conn = connection_class(client)(
            session,
            f"{scheme}://127.0.0.1:{port}/ws",
            lambda: {"X-Access-Key": "key-1", "X-Access-Signature": "sig"},
            backoff_initial=0.05,
            backoff_max=0.1,
            on_reconnect=reasons.append,
            ssl_context=client_context(tls.ca_file) if tls is not None else None,
            ca_file=tls.ca_file if tls is not None else "",
            read_pacer=read_pacer,
            on_read=on_read,
        )
        conn.start()
        try:
            await asyncio.wait_for(body(conn, venue, frames, reasons), 20)
        finally:
            await conn.stop()
        assert not conn.up
    return venue


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("client", CLIENTS)
def test_headers_commands_fragments_ping_and_stop(client: str, tls: TlsFiles | None) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(_trade(1))
        text = _trade(2, pad=5000)
        await ws.send([text[:10], text[10:3000], text[3000:]])  # one message in three frames
        await ws.send([_trade(3).encode()[:7], _trade(3).encode()[7:]])  # binary, two frames
        await asyncio.wait_for(await ws.ping(b"hb"), 5)  # the client answers pings

    async def body(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await _until(lambda: len(frames) == 3 and conn.up)
        conn.session.add_markets(["M2"])
        conn.poke()  # a command written while connected
        await _until(lambda: len(venue.commands[0]) == 2)

    venue = asyncio.run(_run(client, script, body, tls))
    assert venue.headers[0]["x-access-key"] == "key-1" and venue.headers[0]["x-access-signature"] == "sig"
    first, second = venue.commands[0]
    assert first == {"cmd": "subscribe", "markets": ["M1"]}
    assert second == {"cmd": "subscribe", "markets": ["M2"]}
    assert venue.close_codes == [1000], "stop() closes with a close handshake"
    assert len(venue.headers) == 1, "no reconnect"


def test_fragments_reach_the_session_verbatim(tls: TlsFiles | None) -> None:
    """The assembled message is byte-identical to what the venue sent, with either client."""
    text = _trade(1, pad=20000)
    got: dict[str, list[RawFrame]] = {}

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send([text[i : i + 777] for i in range(0, len(text), 777)])

    for client in CLIENTS:
        frames = got[client] = []

        async def body(conn: Connection, venue: Venue, received: list[RawFrame], reasons: list[str]) -> None:
            await _until(lambda: len(received) == 1)
            frames.extend(received)  # noqa: B023 (used before the loop moves on)

        asyncio.run(_run(client, script, body, tls))
    assert got["picows"][0].payload == got["websockets"][0].payload == text.encode()
    assert got["picows"][0].event_key == got["websockets"][0].event_key == "t:t1"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shape", ["one_frame", "fragments"])
def test_message_over_the_limit_closes_1009_and_reconnects(
    client: str, shape: str, tls: TlsFiles | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 64 * 1024
    monkeypatch.setattr(f"ingest.ws_{client}.MAX_MESSAGE", limit)

    async def script(ws: ServerConnection, n: int) -> None:
        if n == 0:
            big = _trade(1, pad=limit + 10)
            await ws.send(big if shape == "one_frame" else [big[i : i + 30000] for i in range(0, len(big), 30000)])
        else:
            await ws.send(_trade(1))

    async def body(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await _until(lambda: len(frames) == 1 and conn.reconnects == 1)

    venue = asyncio.run(_run(client, script, body, tls))
    assert venue.close_codes[0] == 1009, venue.close_codes
    assert len(venue.headers) == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_venue_close_abort_and_kill_reconnect(client: str, tls: TlsFiles | None) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(_trade(1))
        if n == 0:
            await ws.close(1001, "going away")
        elif n == 1:
            ws.transport.abort()  # abnormal disconnect, no close frame

    async def body(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await _until(lambda: len(frames) == 3 and conn.up)
        await conn.kill("silent")
        await _until(lambda: len(frames) == 4 and conn.up)

    venue = asyncio.run(_run(client, script, body, tls))
    assert len(venue.headers) == 4
    assert venue.close_codes[0] == 1001
    assert venue.close_codes[1] == venue.close_codes[2] == 1006  # abort; kill aborts the client's socket
    assert venue.close_codes[3] == 1000


def test_unknown_client_is_refused() -> None:
    with pytest.raises(ValueError, match="picows, websockets"):
        connection_class("aiohttp")


def test_ws_client_setting_is_validated_at_start_up() -> None:
    env = {"MDPIPE_GATHER__WS_CLIENT": "websockets"}
    assert load_config(None, environ=env, use_infra_state=False).gather.ws_client == "websockets"
    assert load_config(None, environ={}, use_infra_state=False).gather.ws_client == "picows"
    with pytest.raises(ConfigError, match=r"gather\.ws_client .*'picows', 'websockets'"):
        load_config(None, environ={"MDPIPE_GATHER__WS_CLIENT": "aiohttp"}, use_infra_state=False)


@pytest.mark.parametrize("client", CLIENTS)
def test_refused_upgrade_backs_off_and_retries(client: str) -> None:
    """A venue answering the upgrade with 401 (bad signature): never up, retried with backoff, reason "error"."""
    attempts: list[str] = []

    def refuse(conn: ServerConnection, request: Any) -> Any:
        attempts.append(request.headers.get("X-Access-Key", ""))
        return conn.respond(401, "bad signature\n")

    async def scenario() -> list[str]:
        reasons: list[str] = []
        async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            session = LineSession(emit=print)
            conn = connection_class(client)(
                session,
                f"ws://127.0.0.1:{port}/",
                lambda: {"X-Access-Key": "key-1"},
                backoff_initial=0.02,
                backoff_max=0.05,
                on_reconnect=reasons.append,
            )
            conn.start()
            await asyncio.wait_for(_until(lambda: len(reasons) >= 3), 10)
            assert not conn.up and conn.connected_ns == 0
            await conn.stop()
        return reasons

    reasons = asyncio.run(scenario())
    assert set(reasons) == {"error"} and len(attempts) >= 3 and set(attempts) == {"key-1"}


@pytest.mark.parametrize("client", CLIENTS)
def test_stop_keeps_what_the_venue_sent_before_it_saw_the_close(client: str) -> None:
    """A graceful stop loses nothing the venue wrote while the connection was open on its side: messages that cross
    the client's close frame on the wire reach the session (the venue counts them as delivered)."""
    sent: list[int] = []

    async def script(ws: ServerConnection, n: int) -> None:
        seq = 0
        try:
            while True:  # a venue streaming without pause: messages are always on the wire when the client closes
                seq += 1
                await ws.send(_trade(seq))
                sent.append(seq)
                if not seq % 20:
                    await asyncio.sleep(0.001)
        except ConnectionClosed:
            pass

    async def body(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await _until(lambda: len(frames) > 2000)
        await conn.stop()

    received: list[RawFrame] = []

    async def keep(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await body(conn, venue, frames, reasons)
        received.extend(frames)

    asyncio.run(_run(client, script, keep))
    seqs = [f.seq for f in received]
    # a send that raised may still have written its message: the client may hold one more than ``sent`` counts
    assert len(sent) > 2000 and seqs == list(range(1, len(seqs) + 1)), (len(seqs), len(sent))
    assert len(seqs) >= len(sent), f"{len(sent) - len(seqs)} messages the venue sent before the close were dropped"


@pytest.mark.parametrize("window_ms", [0, 50])
def test_paced_reads_take_a_window_of_messages_each_and_lose_nothing(window_ms: int, tls: TlsFiles | None) -> None:
    """gather.read_window_ms (picows): after a read the socket rests for the window, so a venue writing every 2 ms
    is read about once per window -- every message still arrives, in order. Without a window (0) each write is a
    read of its own."""
    reads = [0]
    sent: list[int] = []

    async def script(ws: ServerConnection, n: int) -> None:
        for seq in range(1, 401):  # ~0.8-1 s of a venue writing 2 messages every 2 ms
            await ws.send(_trade(seq))
            sent.append(seq)
            if not seq % 2:
                await asyncio.sleep(0.002)

    async def body(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await _until(lambda: len(frames) == 400)

    def count() -> None:
        reads[0] += 1

    started = time.monotonic()
    frames_seen: list[RawFrame] = []

    async def keep(conn: Connection, venue: Venue, frames: list[RawFrame], reasons: list[str]) -> None:
        await body(conn, venue, frames, reasons)
        frames_seen.extend(frames)

    pacer = ReadPacer(window_ms / 1000)
    asyncio.run(_run("picows", script, keep, tls, read_pacer=pacer, on_read=count))
    elapsed = time.monotonic() - started
    assert [f.seq for f in frames_seen] == list(range(1, 401))
    if window_ms:
        # one read per window (+ the subscribe reply and the first read, + TLS delivering a read in records)
        assert reads[0] <= elapsed / (window_ms / 1000) + 5, (reads[0], elapsed)
        assert pacer.windows >= 5
    else:
        assert reads[0] > 100, reads[0]  # the venue's pace: this is what the window removes


def test_read_pacer_resumes_every_paused_socket_together_and_only_open_ones() -> None:
    class Sock:
        def __init__(self) -> None:
            self.reading = True
            self.closing = False
            self.pauses = 0

        def pause_reading(self) -> None:
            self.reading = False
            self.pauses += 1

        def resume_reading(self) -> None:
            self.reading = True

        def is_reading(self) -> bool:
            return self.reading

        def is_closing(self) -> bool:
            return self.closing

    async def scenario() -> None:
        pacer = ReadPacer(0.03)
        a, b, c = Sock(), Sock(), Sock()
        pacer.after_read(a)
        pacer.after_read(a)  # a second delivery of the same socket read (TLS records): one pause
        pacer.after_read(b)
        c.closing = True
        pacer.after_read(c)  # a closing socket is left alone
        assert (a.reading, b.reading, c.reading) == (False, False, True) and a.pauses == 1
        assert pacer.windows == 1  # one timer for both
        await asyncio.sleep(0.01)
        assert not a.reading and not b.reading
        b.closing = True
        await asyncio.sleep(0.04)
        assert a.reading and not b.reading  # resumed together at the window's end; a closed one stays as it is
        pacer.after_read(a)
        assert pacer.windows == 2 and not a.reading
        pacer.stop()  # shutdown: resumed now, never paused again
        assert a.reading
        pacer.after_read(a)
        assert a.reading and pacer.windows == 2

    asyncio.run(scenario())


def test_read_pacer_does_not_rest_a_socket_that_already_holds_more() -> None:
    """A gatherer that is behind (its read returned only what its buffer holds, more is waiting) keeps reading:
    resting then would only let the venue's send buffer grow toward its overflow error."""

    class Sock:
        reading = True

        def pause_reading(self) -> None:
            self.reading = False

        def resume_reading(self) -> None:
            self.reading = True

        def is_reading(self) -> bool:
            return self.reading

        def is_closing(self) -> bool:
            return False

    async def scenario() -> None:
        venue, gatherer = socket.socketpair()
        with venue, gatherer:
            pacer = ReadPacer(0.05)
            sock = Sock()
            venue.sendall(b"x" * 1000)
            await asyncio.sleep(0.01)
            pacer.after_read(sock, gatherer.fileno())
            assert sock.reading and pacer.behind == 1 and pacer.windows == 0
            gatherer.recv(1000)
            pacer.after_read(sock, gatherer.fileno())  # caught up: rests
            assert not sock.reading and pacer.windows == 1
            pacer.stop()

    asyncio.run(scenario())
