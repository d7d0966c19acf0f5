"""Helpers for the venue emulator tests: an in-process venue and two plain clients.

``ws_client`` uses the websockets client; :class:`RawClient` drives websockets' sans-I/O client protocol
over a bare asyncio stream so a test can see ping frames, refuse to answer them, or stop reading.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from mdpipe.config import SimConfig
from venue_sim.app import SimOptions, VenueSim


@asynccontextmanager
async def running_sim(**kw: Any) -> AsyncIterator[VenueSim]:
    """``kw``: settings of the sim section (SimConfig) or the run's own knobs (SimOptions), by name."""
    settings: dict[str, Any] = {"markets": 50, "rate": 500.0, "seed": 3, "churn_per_s": 0.0, "heartbeat_s": 10.0}
    settings.update({"port": 0, "auth": False, **kw})
    section = {name: settings.pop(name) for name in SimConfig.__struct_fields__ if name in settings}
    sim = VenueSim(SimConfig(**section), SimOptions(**settings))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


class Client:
    """JSON commands over a websockets client connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1

    async def cmd(self, cmd: str, **params: Any) -> int:
        cid = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps({"id": cid, "cmd": cmd, "params": params}))
        return cid

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, pred: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Messages received up to and including the first one matching ``pred``."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            out.append(msg)
            if pred(msg):
                return out

    async def reply(self, cid: int, timeout: float = 5.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(data received before, the first reply carrying ``id == cid``)."""
        msgs = await self.until(lambda m: m.get("id") == cid, timeout)
        return msgs[:-1], msgs[-1]


@asynccontextmanager
async def ws_client(sim: VenueSim, **kw: Any) -> AsyncIterator[Client]:
    async with connect(sim.ws_url, compression=None, max_size=None, **kw) as ws:
        yield Client(ws)


class RawClient:
    """A WebSocket client whose pongs and reads the test controls."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.proto = ClientProtocol(parse_uri(url))
        self.answer_pings = True
        self.pings: list[tuple[float, bytes]] = []
        self.texts: list[tuple[float, str]] = []
        self.response: Response | None = None
        self.closed = False

    async def open(self) -> None:
        uri = parse_uri(self.url)
        self.reader, self.writer = await asyncio.open_connection(uri.host, uri.port)
        request = self.proto.connect()
        for k, v in self.headers.items():
            request.headers[k] = v
        self.proto.send_request(request)
        self._flush(force=True)
        while self.response is None and not self.closed:
            await self.pump(5.0)

    def _flush(self, force: bool = False) -> None:
        data = self.proto.data_to_send()
        if force or self.answer_pings:
            for chunk in data:
                if chunk:
                    self.writer.write(chunk)

    def send(self, obj: dict[str, Any]) -> None:
        self._flush()  # keep pending pongs ahead of (or discarded before) our command
        self.proto.send_text(json.dumps(obj).encode())
        self._flush(force=True)

    async def pump(self, timeout: float) -> bool:
        """Read once (up to ``timeout``); False on timeout."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout)
        except TimeoutError:
            return False
        if not data:
            self.proto.receive_eof()
            self.closed = True
        else:
            self.proto.receive_data(data)
        now = time.monotonic()
        for ev in self.proto.events_received():
            if isinstance(ev, Response):
                self.response = ev
            elif isinstance(ev, Frame):
                if ev.opcode is Opcode.PING:
                    self.pings.append((now, bytes(ev.data)))
                elif ev.opcode is Opcode.TEXT:
                    self.texts.append((now, bytes(ev.data).decode()))
                elif ev.opcode is Opcode.CLOSE:
                    self.closed = True
        self._flush()
        return True

    async def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            await self.pump(left)

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above (importlib mode does not let test modules import conftest)."""
    return SimpleNamespace(running_sim=running_sim, ws_client=ws_client, RawClient=RawClient, Client=Client)
