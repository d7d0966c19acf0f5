"""The native dedup worker reading bundle records (several frames in one raw record, schemas.raw_record) on the real
broker: every frame decided once with its own origin, events keyed by their own market, a bad frame dead-lettered
alone, and a SIGKILLed worker's restart losing nothing."""

from __future__ import annotations

import time

import pytest

from dedup_stream.synth import gatherer_copies, produce_frames, venue_events
from mdpipe.partitioner import partition_for
from schemas import decode_dead_letter, decode_event, encode_raw
from schemas.raw_record import encode_bundle
from tests.dedup_stream.test_worker import kill_twice_mid_stream, venue_keys, wait_for_events

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("dedup_workers", ["native"], indirect=True)]


def produce(topics, gatherer: str, frames, bundle_frames: int = 0) -> int:  # type: ignore[no-untyped-def]
    return produce_frames(
        {"bootstrap.servers": topics.bootstrap},
        topics.raw(gatherer),
        frames,
        bundle_frames=bundle_frames,
        partitions=topics.partitions,
    )


def test_bundled_frames_are_each_decided_once_with_their_own_key(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """g1 and g3 send bundles, g2 one frame per record (a topic may hold both while gatherers are upgraded). Every
    40th event comes from g1 alone, twice in a row, so the two land in one bundle: the second is a duplicate of the
    first (its own origin), not the winner read again (which a worker re-emits after a crash). A bundle also carries
    a frame that is not a RawFrame and one whose market is not UTF-8 (msgspec's UnicodeDecodeError, which stopped the
    worker, restarted to read it again): each goes to the dead-letter topic alone, and its neighbours are decided."""
    topics = dedup_topics
    events = venue_events(3000, markets=40, seed=7)
    expected = {e.event_key for e in events}
    twice = {e.event_key for e in events[::40]}  # only g1 has these: its first frame is their winner

    def copies(gatherer: str, delay_ns: int) -> list[bytes]:
        out = []
        for f in gatherer_copies(events, gatherer, delay_ns=delay_ns, reorder=2):
            if f.event_key not in twice:
                out.append(encode_raw(f))
            elif gatherer == "g1":
                out += [encode_raw(f)] * 2
        return out

    produce(topics, "g1", copies("g1", 0), bundle_frames=25)
    produce(topics, "g2", copies("g2", 1_000_000))
    produce(topics, "g3", copies("g3", 3_000_000), bundle_frames=60)
    first = next(iter(gatherer_copies(events[:1], "g3", delay_ns=3_000_000)))
    bad = b"\x93not a frame"
    not_utf8 = encode_raw(first).replace(first.market.encode(), first.market.encode()[:-1] + b"\xed", 1)
    mixed = encode_bundle([encode_raw(first), bad, not_utf8])
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": topics.bootstrap, "partitioner": "murmur2_random"})
    producer.produce(topics.raw("g3"), value=mixed, key=first.market.encode())
    assert producer.flush(30) == 0

    worker = dedup_workers.start(topics, "it-bundles", "w1")
    seen = wait_for_events(topics, expected, 120)
    deadline = time.monotonic() + 60
    while len(topics.read(topics.dlq)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # anything emitted twice would follow its first copy within the batch
    worker.stop()
    seen = venue_keys(topics)
    assert set(seen) == expected
    assert [k for k, n in seen.items() if n > 1] == []  # no event twice: no frame taken for the winner read again
    for partition, _, key, value in topics.read(topics.events):
        event = decode_event(value)
        if hasattr(event, "market") and key:
            assert key == event.market.encode()  # its own market, not its bundle's first frame's
            assert partition == partition_for(key, topics.partitions)
    letters = [decode_dead_letter(v) for _, _, _, v in topics.read(topics.dlq)]
    assert len(letters) == 2, letters
    assert [letter.payload for letter in letters] == [bad, not_utf8]  # each frame alone, not its bundle
    assert "frame 1 of a bundle" in letters[0].reason and "frame 2 of a bundle" in letters[1].reason


def test_bundled_sigkill_mid_stream_then_restart_loses_nothing(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """As test_worker's SIGKILL test, every gatherer sending bundles: a restart re-reads bundles from its last
    commit and finds each winner's own frame by its origin (record offset and index), so it loses nothing and
    every repeat is an exact re-emit of the same winner."""
    topics = dedup_topics
    events = venue_events(30000, markets=60, seed=11)
    kill_twice_mid_stream(topics, dedup_workers, "it-bundle-crash", events, lambda g, fr: produce(topics, g, fr, 50))
