"""Baseline server for the emulator benchmark: a trivial websockets broadcast of pre-encoded messages.

Every connection gets every message through ``websockets.asyncio.server.broadcast`` (one frame per
message, the library's own path), as fast as the loop allows. Prints ``WS ws://...`` when listening and
writes its sent count to STATS_PATH. Run as ``python -m bench.sim.baseline STATS_PATH``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

__all__ = ["main"]

MESSAGE = (
    '{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"KXSIM-E1234-M12345",'
    '"market_id":"00000001-0000-4000-8000-000000003039","price_dollars":"0.4300","delta_fp":"-5.00",'
    '"side":"yes","ts_ms":1767225600123}}'
)


async def amain(stats_path: str) -> None:
    conns: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"WS ws://127.0.0.1:{port}/trade-api/ws/v2", flush=True)
        sent = 0
        last = 0.0
        while True:
            backlog = max((c.transport.get_write_buffer_size() for c in conns), default=0)
            if conns and backlog < 4 << 20:  # simple flow control so memory stays bounded
                for _ in range(200):
                    broadcast(conns, MESSAGE)
                sent += 200
            await asyncio.sleep(0)
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                with open(stats_path + ".tmp", "w") as f:
                    json.dump({"t": now, "sent": sent}, f)
                os.replace(stats_path + ".tmp", stats_path)


def main() -> None:
    asyncio.run(amain(sys.argv[1]))


if __name__ == "__main__":
    main()
