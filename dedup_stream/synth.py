"""Synthetic redundant raw frames for the dedup stage's tests and benchmark (not used in production).

:func:`venue_events` draws distinct Kalshi market-data events (deltas, including identical bodies told apart
by their occurrence number, and trades); :func:`pipeline_events` draws the mix a pipeline run on the emulator
carries (deltas, tickers, trades, snapshots with several levels a side, lifecycle messages, shaped like the
emulator's messages: see :data:`PIPELINE_MIX`); :func:`gatherer_copies` turns either into one RawFrame stream per
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

__all__ = ["PIPELINE_MIX", "VenueEvent", "gatherer_copies", "pipeline_events", "produce_frames", "venue_events"]


@dataclass(frozen=True, slots=True)
class VenueEvent:
    market: str
    kind: str  # "delta" | "trade"
    event_key: str
    msg: bytes  # the JSON "msg" object
    msg_type: str
    t_ns: int  # when the venue sent it
    venue_ms: int | None = None  # snapshots: position in the market's delta stream (the gatherer's decision)


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


# Share of each kind of venue event in a pipeline run on the emulator once the subscription burst is over (measured
# on the raw topics of a `make demo`-like run: deltas ~78 %, tickers ~15 %, trades ~5 %; snapshots come with
# (re)subscriptions, lifecycle messages with market churn).
PIPELINE_MIX: tuple[tuple[str, float], ...] = (
    ("delta", 0.78),
    ("ticker", 0.15),
    ("trade", 0.05),
    ("snapshot", 0.015),
    ("lifecycle", 0.005),
)


def _levels(rng: random.Random, low: int) -> list[list[str]]:
    return [
        [f"0.{p:02d}00", f"{rng.randrange(1, 100)}.{rng.randrange(100):02d}"]
        for p in range(low, low + rng.randrange(3, 11))
    ]


def pipeline_events(
    n: int, markets: int = 20_000, seed: int = 1, t0_ns: int | None = None, spacing_ns: int = 100_000
) -> list[VenueEvent]:
    """``n`` distinct venue events in the pipeline's mix (:data:`PIPELINE_MIX`) over ``markets`` markets, one every
    ``spacing_ns`` from ``t0_ns``; bodies shaped like the emulator's (a ticker carries a dozen fields, a snapshot 3 to
    10 levels a side, a lifecycle message is a metadata update or an event's creation)."""
    rng = random.Random(seed)
    t0 = time.time_ns() if t0_ns is None else t0_ns
    tickers = [f"KXSIM-E{i // 10}-M{i}" for i in range(markets)]
    kinds = [k for k, _ in PIPELINE_MIX]
    weights = [w for _, w in PIPELINE_MIX]
    drawn = rng.choices(kinds, weights, k=n)
    out: list[VenueEvent] = []
    for i, kind in enumerate(drawn):
        market = tickers[rng.randrange(markets)]
        t_ns = t0 + i * spacing_ns
        ts_ms = t_ns // 1_000_000
        market_id = f"00000007-0000-4000-8000-{i % markets:012x}"
        body: dict[str, object]
        venue_ms = None
        if kind == "delta":
            body = {"market_ticker": market, "market_id": market_id, "price_dollars": f"0.{rng.randrange(1, 99):02d}00",
                    "delta_fp": f"{rng.choice('-+').strip('+')}{rng.randrange(1, 50)}.{rng.randrange(100):02d}",
                    "side": rng.choice(["yes", "no"]), "ts_ms": ts_ms}  # fmt: skip
            msg_type, key = "orderbook_delta", f"d:{rng.getrandbits(64):016x}:1"
        elif kind == "ticker":
            price = rng.randrange(2, 98)
            body = {"market_id": market_id, "market_ticker": market, "price_dollars": f"0.{price:02d}00",
                    "yes_bid_dollars": f"0.{price - 1:02d}00", "yes_ask_dollars": f"0.{price + 1:02d}00",
                    "yes_bid_size_fp": f"{rng.randrange(1, 99)}.00", "yes_ask_size_fp": f"{rng.randrange(1, 99)}.00",
                    "last_trade_size_fp": "0.00", "volume_fp": f"{rng.randrange(500)}.00", "open_interest_fp": "0.00",
                    "dollar_volume": 0, "dollar_open_interest": 0, "ts": ts_ms // 1000, "ts_ms": ts_ms,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ms // 1000))}  # fmt: skip
            msg_type, key = "ticker", f"k:{rng.getrandbits(64):016x}:1"
        elif kind == "trade":
            price = rng.randrange(1, 99)
            trade_id = f"{seed:08x}-{i:04x}-4000-8000-{rng.randrange(1 << 48):012x}"
            body = {"trade_id": trade_id, "market_ticker": market, "yes_price_dollars": f"0.{price:02d}00",
                    "no_price_dollars": f"0.{100 - price:02d}00", "count_fp": f"{rng.randrange(1, 50)}.00",
                    "taker_side": "no", "taker_outcome_side": "no", "taker_book_side": "bid", "is_block_trade": False,
                    "ts": ts_ms // 1000, "ts_ms": ts_ms}  # fmt: skip
            msg_type, key = "trade", f"t:{trade_id}"
        elif kind == "snapshot":
            low = rng.randrange(1, 60)
            body = {"market_ticker": market, "market_id": market_id, "yes_dollars_fp": _levels(rng, low),
                    "no_dollars_fp": _levels(rng, 100 - low - 12)}  # fmt: skip
            msg_type, key, venue_ms = "orderbook_snapshot", f"s:{rng.getrandbits(64):016x}", ts_ms
        else:
            event = market.rsplit("-", 1)[0]
            body = {"event_ticker": event, "exchange_index": 0, "title": f"Simulated event {event}", "subtitle": "",
                    "collateral_return_type": "", "series_ticker": "KXSIM"}  # fmt: skip
            msg_type, key, market = "event_lifecycle", f"l:{rng.getrandbits(64):016x}", event
        out.append(VenueEvent(market, kind, key, json.dumps(body, separators=(",", ":")).encode(), msg_type, t_ns,
                              venue_ms))  # fmt: skip
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
                venue_ms=ev.venue_ms,
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
