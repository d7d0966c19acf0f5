"""Synthetic redundant raw frames for the dedup stage's tests and benchmark (not used in production).

:func:`venue_events` draws distinct Kalshi market-data events (deltas, including identical bodies told apart
by their occurrence number, and trades); :func:`gatherer_copies` turns them into one RawFrame stream per
gatherer with its own connection numbering, receive-time jitter, local reordering and optional drops;
:func:`produce_frames` writes frames to a raw topic keyed by market with the murmur2 partitioner.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas import RawFrame, encode_raw

__all__ = ["VenueEvent", "gatherer_copies", "produce_frames", "venue_events"]


@dataclass(frozen=True, slots=True)
class VenueEvent:
    market: str
    kind: str  # "delta" | "trade"
    event_key: str
    msg: bytes  # the JSON "msg" object
    msg_type: str
    t_ns: int  # when the venue sent it


def venue_events(
    n: int, markets: int = 50, seed: int = 1, identical_every: int = 10, t0_ns: int | None = None
) -> list[VenueEvent]:
    """``n`` distinct venue events over ``markets`` markets, 10 kHz from ``t0_ns`` (default: now), every
    ``identical_every``-th one a delta whose body repeats the previous delta of its market exactly (so only
    the occurrence number tells them apart)."""
    rng = random.Random(seed)
    t0 = time.time_ns() if t0_ns is None else t0_ns
    tickers = [f"KXSYN-{i:05d}" for i in range(markets)]
    out: list[VenueEvent] = []
    last_delta: dict[str, tuple[str, bytes]] = {}
    occurrences: dict[str, int] = {}
    for i in range(n):
        market = tickers[rng.randrange(markets)]
        t_ns = t0 + i * 100_000
        if i % 7 == 3:
            trade_id = f"tr-{seed}-{i}"
            msg = {
                "trade_id": trade_id,
                "market_ticker": market,
                "yes_price_dollars": f"0.{rng.randrange(10, 99)}00",
                "no_price_dollars": "0.5000",
                "count_fp": f"{rng.randrange(1, 50)}.00",
                "taker_outcome_side": "yes",
                "ts_ms": t_ns // 1_000_000,
            }
            out.append(VenueEvent(market, "trade", f"trade:{trade_id}", json.dumps(msg).encode(), "trade", t_ns))
            continue
        if i % identical_every == 0 and market in last_delta:
            body_key, body = last_delta[market]
        else:
            msg = {
                "market_ticker": market,
                "market_id": f"id-{market}",
                "price_dollars": f"0.{rng.randrange(10, 99)}00",
                "delta_fp": f"{rng.choice([-1, 1]) * rng.randrange(1, 20)}.00",
                "side": rng.choice(["yes", "no"]),
                "ts_ms": t_ns // 1_000_000,
            }
            body = json.dumps(msg).encode()
            body_key = f"delta:{market}:{msg['side']}:{msg['price_dollars']}:{msg['delta_fp']}:{msg['ts_ms']}"
            last_delta[market] = (body_key, body)
        occurrences[body_key] = occurrences.get(body_key, 0) + 1
        key = f"{body_key}#{occurrences[body_key]}"
        out.append(VenueEvent(market, "delta", key, body, "orderbook_delta", t_ns))
    return out


def gatherer_copies(
    events: Sequence[VenueEvent],
    gatherer: str,
    *,
    seed: int = 1,
    delay_ns: int = 0,
    jitter_ns: int = 2_000_000,
    reorder: int = 0,
    keep: float = 1.0,
) -> list[RawFrame]:
    """The frames ``gatherer`` records for ``events``: receive time = venue time + ``delay_ns`` + jitter; with
    ``reorder`` > 0 frames are shuffled inside windows of that many (different markets only stay ordered per
    market in Kafka anyway); ``keep`` < 1 drops that share of the events."""
    rng = random.Random(f"{seed}-{gatherer}")
    seq = 0
    frames: list[RawFrame] = []
    for ev in events:
        if keep < 1.0 and rng.random() >= keep:
            continue
        seq += 1
        payload = b'{"type":"%s","sid":1,"seq":%d,"msg":%s}' % (ev.msg_type.encode(), seq, ev.msg)
        frames.append(
            RawFrame(
                venue="kalshi",
                gatherer=gatherer,
                conn=1,
                sid=1,
                seq=seq,
                recv_ns=ev.t_ns + delay_ns + rng.randrange(jitter_ns + 1),
                kind=ev.kind,  # type: ignore[arg-type]
                market=ev.market,
                event_key=ev.event_key,
                payload=payload,
            )
        )
    if reorder > 1:
        for start in range(0, len(frames), reorder):
            chunk = frames[start : start + reorder]
            rng.shuffle(chunk)
            frames[start : start + reorder] = chunk
    return frames


def produce_frames(producer_conf: dict[str, object], topic: str, frames: Iterable[RawFrame | bytes]) -> int:
    """Write frames (RawFrame or already-encoded bytes of one) to ``topic``, key = market. Returns the count."""
    from confluent_kafka import Producer

    from schemas import decode_raw

    conf = {"partitioner": "murmur2_random", "linger.ms": 20, "batch.num.messages": 10000, **producer_conf}
    producer = Producer(conf)
    count = 0
    for frame in frames:
        if isinstance(frame, bytes):
            value, frame = frame, decode_raw(frame)
        else:
            value = encode_raw(frame)
        while True:
            try:
                producer.produce(topic, value=value, key=frame.market.encode(), timestamp=frame.recv_ns // 1_000_000)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} frames not delivered to {topic}")
    return count
