"""The gatherer's per-message Python work priced alone: ``python -m bench.gatherer.hot_path`` (no broker, no socket).

Messages come from the emulator's own load generator (:mod:`venue_sim.load`: its mix of deltas, tickers, trades and
lifecycle messages, its bodies), wrapped in the envelopes the emulator sends (one sid per channel, seq counted per
sid). They are fed in socket-read-sized bursts (``--per-read``) to the default venue's session (the gatherer's own,
:meth:`venues.interface.Venue.session`) whose frames go to the gatherer's real ``_emit`` / ``after_read`` path with a
producer that only counts (``--stage session``), or to a real :class:`ingest.producer.RawProducer` whose librdkafka
producer points at an address where no broker listens (``--stage produce``: the produce call is paid, nothing is
sent). Reports the CPU-µs per message of the calling thread, the best of ``--repeat`` passes.
Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "messages"]


def messages(count: int, markets: int = 2000, seed: int = 7) -> list[bytes]:
    """``count`` market-data messages as the emulator sends them (envelopes, sids, seqs)."""
    from venue_sim.book import Books
    from venue_sim.load import Generator
    from venue_sim.markets import MarketTable
    from venues import default_name, get_venue

    wire = get_venue(default_name()).emulator_wire()
    CH_TICKER, TYPES = wire.CH_TICKER, wire.TYPES

    table = MarketTable(markets, seed, 1_767_225_600_000)
    gen = Generator(table, Books(seed), seed=seed, rate=5000.0)
    seq = [0] * len(TYPES)
    sids = [1, 2, 3, 4, 4, 4]  # lifecycle-channel event messages share the lifecycle sid
    out: list[bytes] = []
    while len(out) < count:
        for ev in gen.generate(1000):
            ch, body = ev[1], ev[4]
            sid = sids[ch]
            if ch == CH_TICKER:
                out.append(f'{{"type":"ticker","sid":{sid},"msg":{body}}}'.encode())
                continue
            seq[sid] += 1
            out.append(f'{{"type":"{TYPES[ch]}","sid":{sid},"seq":{seq[sid]},"msg":{body}}}'.encode())
    return out[:count]


class _CountingProducer:
    """Stands in for RawProducer: holds and releases like it, sends nothing."""

    def __init__(self) -> None:
        self.held: list[tuple[str, bytes | None, bytes]] = []
        self.sent = 0

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent += 1

    def release(self) -> int:
        n = len(self.held)
        self.sent += n
        self.held.clear()
        return n


def _gatherer(producer: Any) -> Any:
    from ingest.gatherer import Gatherer
    from mdpipe.config import GatherConfig, VenueConfig

    gather = GatherConfig(channels=["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"])
    venue = VenueConfig(rest_url="http://127.0.0.1:9/trade-api/v2", ws_url="ws://127.0.0.1:9")
    return Gatherer(
        gather, venue, producer, gatherer_id="ghot", raw_topic="raw.ghot", dlq_topic="dlq", markets_topic="markets"
    )


async def _run(ns: argparse.Namespace, msgs: list[bytes]) -> dict[str, Any]:
    from ingest.producer import RawProducer
    from ingest.spool import Spool

    if ns.stage == "produce":
        spool_dir = tempfile.mkdtemp(prefix="hot-path-spool-")
        conf = {"bootstrap.servers": "127.0.0.1:9", "linger.ms": 1000, "queue.buffering.max.messages": 2_000_000}
        # no warm-up: the quiet producer's path from the first frame (the broker is never reached here)
        producer: Any = RawProducer(conf, Spool(Path(spool_dir), 1 << 30), queue_max=2_000_000, warm_topics={})
    else:
        producer = _CountingProducer()
    g = _gatherer(producer)
    g._loop = asyncio.get_running_loop()  # frames are held as while running (no-op on trees without holding)
    conn = g._connection(0)
    session = conn.session
    after_read = getattr(conn, "on_read", None) or (lambda: None)
    receive = session.receive
    per = ns.per_read
    best = float("inf")
    passes: list[float] = []
    clock = time.time_ns
    for _ in range(ns.repeat):
        session._seq.clear()  # every pass starts each sid at seq 1 again (no gap reports)
        t0 = time.thread_time()
        for i in range(0, len(msgs), per):
            for data in msgs[i : i + per]:
                receive(data, clock())
            after_read()
        if hasattr(producer, "held") and producer.held:
            producer.release()
        dt = time.thread_time() - t0
        passes.append(1e6 * dt / len(msgs))
        best = min(best, passes[-1])
        if ns.stage == "produce":
            producer._p.purge(in_queue=True, in_flight=True)
            producer._p.poll(0)
    stats = session.stats
    return {
        "stage": ns.stage,
        "messages": len(msgs),
        "per_read": per,
        "us_per_message_best": round(best, 3),
        "us_per_message_median": round(statistics.median(passes), 3),
        "by_kind": dict(stats.by_kind),
        "dead": stats.dead,
        "gaps": stats.gaps,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gatherer.hot_path", description=__doc__)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--per-read", type=int, default=25, help="messages per socket read (5,000/s at 200 reads/s)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--stage", choices=["session", "produce"], default="session")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    msgs = messages(ns.messages)
    result = asyncio.run(_run(ns, msgs))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
