"""Synthetic redundant raw frames for the dedup stage's tests and benchmark (not used in production).

:func:`venue_events` and :func:`pipeline_events` draw distinct venue events from a venue's synthetic data (the
venue's ``synth`` module, :meth:`venues.interface.Venue.synth`; default: the default venue): market-data events with
identical bodies told apart by their occurrence number, or the mix a pipeline run on the emulator carries;
:func:`gatherer_copies` turns them into one RawFrame stream per gatherer with its own connection numbering,
receive-time jitter, local reordering and optional drops (each message in its venue's envelope);
:func:`produce_frames` writes frames to a raw topic keyed by market with the murmur2 partitioner.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from schemas import RawFrame, encode_raw
from venues import default_name, get_venue
from venues.synthetic import VenueEvent

__all__ = ["VenueEvent", "gatherer_copies", "pipeline_events", "produce_frames", "venue_events"]


def _synth(venue: str | None) -> ModuleType:
    return get_venue(venue or default_name()).synth()


def venue_events(
    n: int,
    markets: int = 50,
    seed: int = 1,
    identical_every: int = 10,
    t0_ns: int | None = None,
    venue: str | None = None,
) -> list[VenueEvent]:
    """``n`` distinct events of ``venue`` over ``markets`` markets, 10 kHz from ``t0_ns`` (default: now), every
    ``identical_every``-th one a delta whose body repeats the previous delta of its market exactly (so only
    the occurrence number tells them apart)."""
    events: list[VenueEvent] = _synth(venue).venue_events(n, markets, seed, identical_every, t0_ns)
    return events


def pipeline_events(
    n: int,
    markets: int = 20_000,
    seed: int = 1,
    t0_ns: int | None = None,
    spacing_ns: int = 100_000,
    venue: str | None = None,
) -> list[VenueEvent]:
    """``n`` distinct events of ``venue`` in the mix of kinds a pipeline run on the emulator carries, over
    ``markets`` markets, one every ``spacing_ns`` from ``t0_ns`` (default: now)."""
    events: list[VenueEvent] = _synth(venue).pipeline_events(n, markets, seed, t0_ns, spacing_ns)
    return events


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
    payloads: dict[str, Callable[[str, int, bytes], bytes]] = {}  # venue -> its envelope of one message
    seq = 0
    frames: list[RawFrame] = []
    for ev in events:
        if keep < 1.0 and rng.random() >= keep:
            continue
        seq += 1
        wrap = payloads.get(ev.venue)
        if wrap is None:
            wrap = payloads[ev.venue] = _synth(ev.venue).payload
        frames.append(
            RawFrame(
                venue=ev.venue,
                gatherer=gatherer,
                conn=1,
                sid=1,
                seq=seq,
                recv_ns=ev.t_ns + delay_ns + rng.randrange(jitter_ns + 1),
                kind=ev.kind,  # type: ignore[arg-type]
                market=ev.market,
                event_key=ev.event_key,
                payload=wrap(ev.msg_type, seq, ev.msg),
                venue_ms=ev.venue_ms,
            )
        )
    if reorder > 1:
        for start in range(0, len(frames), reorder):
            chunk = frames[start : start + reorder]
            rng.shuffle(chunk)
            frames[start : start + reorder] = chunk
    return frames


def produce_frames(
    producer_conf: dict[str, object],
    topic: str,
    frames: Iterable[RawFrame | bytes],
    *,
    bundle_frames: int = 0,
    partitions: int = 0,
) -> int:
    """Write frames (RawFrame or already-encoded bytes of one) to ``topic``, key = market. Returns the count.

    With ``bundle_frames`` > 0 (and the topic's ``partitions``) the frames of each partition travel in bundles of up
    to that many frames, in their order, as a gatherer sends them (:mod:`schemas.raw_record`: keyed by the first
    frame's market, stamped with its receive time); a partition's bundle goes out when it is full, the rest at the
    end.

    Every frame is stored, in order, or this raises: the producer is idempotent with one request in flight (a retry
    after NOT_LEADER right after the topic's creation keeps the order, and librdkafka's implicit ack, which needs a
    second request in flight, cannot happen), and every delivery report must carry an offset."""
    from confluent_kafka import Producer

    from mdpipe.kafka import report_stored
    from mdpipe.partitioner import partition_for
    from schemas import decode_raw
    from schemas.raw_record import encode_bundle

    if bundle_frames and partitions <= 0:
        raise ValueError("bundle_frames needs the topic's partitions")
    unstored: list[str] = []

    def on_delivery(err: object, msg: Any) -> None:
        if err is not None or not report_stored(msg):
            unstored.append(str(err) if err is not None else "acknowledged without an offset")

    conf = {
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 1,
        **producer_conf,
        "on_delivery": on_delivery,
    }
    producer = Producer(conf)
    count = 0

    def put(value: bytes, frame: RawFrame) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=frame.market.encode(), timestamp=frame.recv_ns // 1_000_000)
                return
            except BufferError:
                producer.poll(0.05)

    pending: dict[int, tuple[RawFrame, list[bytes]]] = {}  # partition -> first frame, frames of the open bundle
    for frame in frames:
        if isinstance(frame, bytes):
            value, frame = frame, decode_raw(frame)
        else:
            value = encode_raw(frame)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
        if not bundle_frames:
            put(value, frame)
            continue
        partition = partition_for(frame.market, partitions)
        first, values = pending.setdefault(partition, (frame, []))
        values.append(value)
        if len(values) >= bundle_frames:
            del pending[partition]
            put(encode_bundle(values), first)
    for first, values in pending.values():
        put(values[0] if len(values) == 1 else encode_bundle(values), first)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} frames not delivered to {topic}")
    if unstored:
        raise RuntimeError(f"{len(unstored)} frames not stored in {topic}: {unstored[0]}")
    return count
