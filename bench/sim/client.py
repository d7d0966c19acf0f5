"""Fast benchmark WebSocket reader (runs in its own process): subscribes to every market in chunks and
counts frames by type with a minimal frame parser, answering heartbeat pings. No JSON parsing of data.

Run as ``python -m bench.sim.client WS_URL MARKETS CONNECTIONS CHUNK STATS_PATH``; it writes its counters
as JSON to STATS_PATH every 0.5 s until killed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from urllib.parse import urlsplit

__all__ = ["Reader", "main"]


def _client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload  # zero mask key: payload unchanged


class Reader:
    """One connection: counts ``orderbook_delta`` / ``orderbook_snapshot`` / other frames and bytes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.deltas = 0
        self.snapshots = 0
        self.other = 0
        self.errors: list[str] = []
        self.bytes = 0
        self.pings = 0

    async def open(self) -> None:
        u = urlsplit(self.url)
        self.reader, self.writer = await asyncio.open_connection(u.hostname, u.port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {head[:60]!r}")

    def send(self, obj: dict[str, object]) -> None:
        self.writer.write(_client_frame(0x1, json.dumps(obj).encode()))

    async def run(self) -> None:
        buf = b""
        read = self.reader.read
        while True:
            data = await read(1 << 22)
            if not data:
                return
            self.bytes += len(data)
            buf = buf + data if buf else data
            pos = 0
            end = len(buf)
            while end - pos >= 2:
                b0 = buf[pos]
                n = buf[pos + 1] & 0x7F
                hdr = 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    hdr = 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    hdr = 10
                start = pos + hdr
                if start + n > end:
                    break
                op = b0 & 0x0F
                if op == 0x1:
                    kind = buf[start + 9 : start + 20]
                    if kind == b"orderbook_d":
                        self.deltas += 1
                    elif kind == b"orderbook_s":
                        self.snapshots += 1
                    else:
                        self.other += 1
                        if kind.startswith(b"error"):
                            self.errors.append(buf[start : start + n].decode())
                elif op == 0x9:
                    self.pings += 1
                    self.writer.write(_client_frame(0xA, buf[start : start + n]))
                elif op == 0x8:
                    return
                pos = start + n
            buf = buf[pos:]

    def stats(self) -> dict[str, object]:
        return {
            "deltas": self.deltas,
            "snapshots": self.snapshots,
            "other": self.other,
            "bytes": self.bytes,
            "pings": self.pings,
            "errors": self.errors[:5],
        }


async def _subscribe_all(r: Reader, markets: int, chunk: int) -> None:
    """Subscribe in chunks, at most two chunks of snapshots outstanding (keeps the venue's buffer bounded)."""
    sent = 0
    cid = 1
    while sent < markets:
        while r.snapshots < sent - chunk:
            await asyncio.sleep(0.005)
        tickers = [f"KXSIM-E{i // 10}-M{i}" for i in range(sent, min(markets, sent + chunk))]
        r.send({"id": cid, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": tickers}})
        cid += 1
        sent += len(tickers)


async def amain(url: str, markets: int, connections: int, chunk: int, stats_path: str) -> None:
    readers = [Reader(url) for _ in range(connections)]
    for r in readers:
        await r.open()
    tasks = [asyncio.create_task(r.run()) for r in readers]
    if markets:
        for r in readers:
            tasks.append(asyncio.create_task(_subscribe_all(r, markets, chunk)))
    while True:
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"t": time.monotonic(), "readers": [r.stats() for r in readers]}, f)
        os.replace(tmp, stats_path)
        await asyncio.sleep(0.5)


def main() -> None:
    url, markets, connections, chunk, stats_path = sys.argv[1:6]
    asyncio.run(amain(url, int(markets), int(connections), int(chunk), stats_path))


if __name__ == "__main__":
    main()
