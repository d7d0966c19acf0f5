"""The Faust dedup engine reading bundle records (several frames in one raw record, :mod:`schemas.raw_record`) next to
plain ones, on the real broker: every frame decided once with its own origin, each event keyed by its own market on
its market's partition, a bad frame dead-lettered alone and a bundle that does not split dead-lettered whole."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pytest

from dedup_stream.synth import VenueEvent, gatherer_copies, produce_frames, venue_events
from mdpipe.partitioner import partition_for
from schemas import RawFrame, decode_dead_letter, decode_event, encode_raw
from schemas.events import Gap
from schemas.raw_record import encode_bundle

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("dedup_workers", ["faust"], indirect=True)]

Record = tuple[bytes, bytes, int, int]  # value, key, partition, timestamp (ms)


def bundled(frames: Sequence[RawFrame], size: int, partitions: int, twice_every: int = 0) -> list[Record]:
    """Records carrying ``frames`` as a gatherer bundles them: per partition, in order, up to ``size`` frames a
    bundle, keyed by (and stamped with the receive time of) its first frame's market. With ``twice_every``, every
    such-th frame goes in its bundle twice in a row (a repeat with an origin of its own)."""
    open_: dict[int, tuple[RawFrame, list[bytes]]] = {}  # partition -> first frame, frames of its open bundle
    out: list[Record] = []

    def close(partition: int) -> None:
        head, values = open_.pop(partition)
        out.append((encode_bundle(values), head.market.encode(), partition, head.recv_ns // 1_000_000))

    for i, frame in enumerate(frames):
        partition, value = partition_for(frame.market, partitions), encode_raw(frame)
        values = open_.setdefault(partition, (frame, []))[1]
        values.extend((value, value) if twice_every and i % twice_every == 0 else (value,))
        if len(values) >= size:
            close(partition)
    for partition in list(open_):
        close(partition)
    return out


def only_in_bundles(events: Sequence[VenueEvent], plain: Sequence[RawFrame]) -> set[str]:
    """Keys of the events that the gatherer sending plain records has no copy of."""
    return {e.event_key for e in events} - {f.event_key for f in plain}


def produce_records(topics, gatherer: str, records: Sequence[Record]) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Write ``records`` to raw.<gatherer> on their explicit partitions, in order; returns (partition, offset) of
    each."""
    from confluent_kafka import Producer

    stored: dict[int, tuple[int, int]] = {}
    failed: list[str] = []
    producer = Producer(
        {"bootstrap.servers": topics.bootstrap, "enable.idempotence": True, "max.in.flight.requests.per.connection": 1}
    )
    for i, (value, key, partition, ts_ms) in enumerate(records):

        def done(err: object, msg: object, i: int = i) -> None:
            if err is not None:
                failed.append(str(err))
            else:
                stored[i] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]

        producer.produce(
            topics.raw(gatherer), value=value, key=key, partition=partition, timestamp=ts_ms, on_delivery=done
        )
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed
    return [stored[i] for i in range(len(records))]


def stopped_frames(worker) -> int:  # type: ignore[no-untyped-def]
    """The ``frames`` the worker's ``dedup_stop`` line reports."""
    found = re.findall(r"event=dedup_stop .*?\bframes=(\d+)", worker.log())
    assert found, worker.log()[-3000:]
    return int(found[-1])


def test_faust_bundles_and_plain_records_give_each_event_once(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """g1 (every event) and g3 (most) send bundles, g2 (half the events) one frame per record. Each event is emitted
    once, keyed by its own market on that market's partition, although a bundle is keyed by its first frame's
    market. g1 puts every 50th frame twice in a row in its bundle: the second is a duplicate (an origin of its own),
    not the winner read again (which a worker re-emits after a crash)."""
    topics = dedup_topics
    events = venue_events(900, markets=24, seed=31)
    expected = Counter(e.event_key for e in events)
    g1 = gatherer_copies(events, "g1", reorder=3)
    g2 = gatherer_copies(events, "g2", delay_ns=2_000_000, keep=0.5)
    g3 = gatherer_copies(events, "g3", delay_ns=1_000_000, reorder=5, keep=0.7)
    g1_records = bundled(g1, 6, topics.partitions, twice_every=50)
    g3_records = bundled(g3, 3, topics.partitions)
    repeats = len(range(0, len(g1), 50))
    assert only_in_bundles(events, g2), "some events must come in bundles alone"
    produce_records(topics, "g1", g1_records)
    produce_frames({"bootstrap.servers": topics.bootstrap}, topics.raw("g2"), g2)
    produce_records(topics, "g3", g3_records)

    worker = dedup_workers.start(topics, "it-fbundles", "w1", "--exit-when-idle", "--idle-s", "4")
    assert worker.wait(180) == 0, worker.log()[-3000:]

    seen: Counter[str] = Counter()
    for partition, _, key, value in topics.read(topics.events):
        event = decode_event(value)
        assert not isinstance(event, Gap)
        assert key == event.market.encode(), (key, event.market)  # its own market, not its bundle's first frame's
        assert partition == partition_for(event.market, topics.partitions)
        seen[event.event_key] += 1
    assert seen == expected, f"missing {len(set(expected) - set(seen))}, twice {[k for k, n in seen.items() if n > 1]}"
    assert topics.read(topics.dlq) == []
    gatherers = worker.summary()["gatherers"]
    assert isinstance(gatherers, dict)
    assert [gatherers[g]["frames_in"] for g in ("g1", "g2", "g3")] == [len(g1) + repeats, len(g2), len(g3)]
    assert sum(g["won"] for g in gatherers.values()) == len(events)
    assert stopped_frames(worker) == len(g1) + repeats + len(g2) + len(g3)  # frames, not records


def test_faust_bad_frame_in_a_bundle_goes_to_the_dlq_alone(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """A bundle whose third frame is not a RawFrame: that frame alone reaches the dead-letter topic (its bytes, the
    record's coordinates, its index in the reason) and the bundle's other frames are decided. A bundle that does not
    split goes there whole."""
    topics = dedup_topics
    events = venue_events(60, markets=3, seed=37)
    frames = gatherer_copies(events, "g1")
    partition = partition_for(frames[0].market, topics.partitions)
    mine = [f for f in frames if partition_for(f.market, topics.partitions) == partition][:4]
    others = [f for f in frames if f not in mine]
    bad = b"\x93not a raw frame"
    mixed = encode_bundle([encode_raw(mine[0]), encode_raw(mine[1]), bad, encode_raw(mine[2])])
    damaged = encode_bundle([encode_raw(mine[3])])[:-4]
    records: list[Record] = [
        (mixed, mine[0].market.encode(), partition, mine[0].recv_ns // 1_000_000),
        (damaged, mine[3].market.encode(), partition, mine[3].recv_ns // 1_000_000),
    ]
    offsets = produce_records(topics, "g1", records)
    produce_frames({"bootstrap.servers": topics.bootstrap}, topics.raw("g1"), others)

    worker = dedup_workers.start(topics, "it-fbad", "w1", "--exit-when-idle", "--idle-s", "4")
    assert worker.wait(180) == 0, worker.log()[-3000:]

    seen = Counter(decode_event(v).event_key for _, _, _, v in topics.read(topics.events))
    assert seen == Counter(f.event_key for f in frames if f is not mine[3])  # mine[3] travelled in the damaged one
    letters = sorted((decode_dead_letter(v) for _, _, _, v in topics.read(topics.dlq)), key=lambda d: d.source_offset)
    assert len(letters) == 2, letters
    alone, whole = letters
    assert alone.payload == bad  # the frame alone, not its bundle
    assert (alone.source_topic, alone.source_partition, alone.source_offset) == (topics.raw("g1"), *offsets[0])
    assert "frame 2 of a bundle" in alone.reason and alone.stage == "dedup"
    assert whole.payload == damaged and whole.reason.startswith("raw bundle: ")
    assert (whole.source_partition, whole.source_offset) == offsets[1]
    assert worker.summary()["invalid"] == 2
