"""Feeds the dedup benchmark's raw topics the way the gatherers of a pipeline run do.

One producer per gatherer, configured like ``mdpipe gather``'s (``mdpipe.kafka.producer_config`` with the
configured compression and ``gather.linger_ms``), writes its copy of each venue event of
:func:`dedup_stream.synth.pipeline_events` (the pipeline's mix of message kinds) keyed by market. Events are sent at
``rate`` events/s in ticks of a few milliseconds, so the topics hold the small compressed batches a pipeline's raw
topics hold; each copy's receive time is the moment it is sent (the dedup hop's latency is measured from it).

Run as ``python -m bench.dedup.feed BOOTSTRAP PREFIX RATE SECONDS [--markets M] [--seed S]``; prints
``fed frames=N seconds=S`` when done. Gatherer ids g1..g3, topics ``<PREFIX>raw.<gid>``.
"""

from __future__ import annotations

import argparse
import random
import time

import msgspec
from confluent_kafka import Producer

from dedup_stream.synth import pipeline_events
from mdpipe.config import load_config
from mdpipe.kafka import producer_config
from schemas import RawFrame, encode_raw
from venues import default_name, get_venue

__all__ = ["GATHERERS", "feed"]

GATHERERS = ("g1", "g2", "g3")
TICK_S = 0.005  # how often the feeder wakes up to send what is due (a gatherer's receive loop sends as it reads)


def feed(bootstrap: str, prefix: str, rate: float, seconds: float, markets: int = 20_000, seed: int = 1) -> int:
    """Send ``rate * seconds`` venue events, three copies each; returns the frames sent."""
    config = load_config()
    kafka = msgspec.structs.replace(config.kafka, bootstrap_servers=bootstrap)
    producers = {
        g: Producer(
            producer_config(kafka, linger_ms=config.gather.linger_ms, batch_num_messages=10000, client_id=f"feed-{g}")
        )
        for g in GATHERERS
    }
    events = pipeline_events(int(rate * seconds), markets=markets, seed=seed)
    rng = random.Random(seed)
    seqs = dict.fromkeys(GATHERERS, 0)
    venue = default_name()  # pipeline_events draws the default venue's events
    envelope = get_venue(venue).synth().payload  # one message in the venue's wire envelope
    sent = 0
    started = time.monotonic()
    due = 0
    while due < len(events):
        due = min(len(events), int((time.monotonic() - started) * rate) + 1)
        batch = events[sent // len(GATHERERS) : due]
        for gid in GATHERERS if batch else ():
            order = list(batch)
            if len(order) > 2:  # copies of one instant leave each gatherer in its own order
                i = rng.randrange(len(order) - 1)
                order[i], order[i + 1] = order[i + 1], order[i]
            producer = producers[gid]
            topic = f"{prefix}raw.{gid}"
            for ev in order:
                seqs[gid] += 1
                frame = RawFrame(
                    venue=venue, gatherer=gid, conn=1, sid=1, seq=seqs[gid], recv_ns=time.time_ns(), kind=ev.kind,  # type: ignore[arg-type]
                    market=ev.market, event_key=ev.event_key, venue_ms=ev.venue_ms,
                    payload=envelope(ev.msg_type, seqs[gid], ev.msg),
                )  # fmt: skip
                while True:
                    try:
                        producer.produce(topic, encode_raw(frame), ev.market.encode())
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
        sent += len(batch) * len(GATHERERS)
        time.sleep(max(0.0, TICK_S - (time.monotonic() - started) % TICK_S))
    elapsed = time.monotonic() - started
    for gid, producer in producers.items():
        if producer.flush(60):
            raise RuntimeError(f"feeder: {gid}'s frames not all delivered")
    print(f"fed frames={sent} seconds={elapsed:.3f}", flush=True)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup.feed", description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("prefix")
    parser.add_argument("rate", type=float, help="venue events per second (three frames each)")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--markets", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    feed(args.bootstrap, args.prefix, args.rate, args.seconds, args.markets, args.seed)


if __name__ == "__main__":
    main()
