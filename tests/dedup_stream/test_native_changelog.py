"""Native engine's changelog on the real broker: acknowledgement marks that hold events, resumable restores."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from dedup_stream.changelog_format import MAX_PAIRS
from dedup_stream.native_output import NativeOutput
from dedup_stream.partition_state import PartitionStates
from dedup_stream.restore import ChangelogRestorer

pytestmark = pytest.mark.integration


def test_changelog_mark_is_acked_only_after_its_records(kafka_bootstrap: str, make_topics: Callable) -> None:  # type: ignore[type-arg]
    (topic,) = make_topics(partitions=2, compacted=True)
    output = NativeOutput({"bootstrap.servers": kafka_bootstrap, "linger.ms": 1}, topic)
    output.put_changelog(0, [(b"a%d" % i, b"v") for i in range(3)])  # one batch: one record
    output.put_changelog(0, [(b"a%d" % i, b"v") for i in range(3, 5)])
    output.put_changelog(1, [(b"b", b"v")])
    mark = output.changelog_mark()
    assert mark == {0: 2, 1: 1}
    assert not output.changelog_acked(mark)  # delivery reports are only served by poll/flush
    assert output.flush(30) is None
    assert output.changelog_acked(mark)
    assert output.delivered == {0: 1, 1: 0}
    output.put_changelog(0, [(b"a3", b"v")])
    later = output.changelog_mark()
    assert output.changelog_acked(mark) and not output.changelog_acked(later)
    assert output.flush(30) is None and output.changelog_acked(later)


def test_restore_cut_short_resumes_from_saved_offset(
    kafka_bootstrap: str,
    make_topics: Callable,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    (topic,) = make_topics(partitions=1, compacted=True)
    output = NativeOutput({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5}, topic)
    total = 30000
    for i in range(total):  # one changelog record per write (one-write batches), so offsets count writes
        output.put_changelog(0, [(b"k%06d" % i, b"v")])
    assert output.flush(60) is None
    states = PartitionStates(tmp_path / "s", 3600, lambda p, records: None)
    states.open(0)
    restorer = ChangelogRestorer({"bootstrap.servers": kafka_bootstrap}, topic, save_every=1)
    real_apply = states.apply
    calls = 0

    def failing_apply(partition: int, records: list[tuple[bytes, bytes | None]]) -> int:
        nonlocal calls
        if records:
            calls += 1
            if calls == 3:  # consume() returns at most 10,000 records: the third batch is never the last
                raise RuntimeError("worker expelled mid-restore")
        return real_apply(partition, records)

    states.apply = failing_apply  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="expelled"):
        restorer.restore(states, 0)
    saved = states.covered(0)
    assert saved is not None and 0 < saved < total - 1
    states.apply = real_apply  # type: ignore[method-assign]
    assert restorer.restore(states, 0) == total - 1 - saved  # only the rest is read again
    assert states.covered(0) == total - 1
    assert all(states.get(b"k%06d" % i, 0) == b"v" for i in range(0, total, 997))
    restorer.close()
    states.close_all()


def test_restore_of_many_small_partitions_never_waits_out_a_timeout(
    kafka_bootstrap: str,
    make_topics: Callable,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """A SIGKILLed worker's restart replays a short tail per partition: that must take round trips, not a consume
    timeout per partition (it took 0.5 s per partition, 6 partitions >= 3 s)."""
    partitions = 6
    (topic,) = make_topics(partitions=partitions, compacted=True)
    output = NativeOutput({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5}, topic)
    for p in range(partitions):
        for i in range(200 + p):  # one changelog record per write (one-write batches), so offsets count writes
            output.put_changelog(p, [(b"p%d-k%04d" % (p, i), b"v%d" % p)])
    assert output.flush(60) is None
    states = PartitionStates(tmp_path / "s", 3600, lambda p, records: None)
    for p in range(partitions):
        states.open(p)
    restorer = ChangelogRestorer({"bootstrap.servers": kafka_bootstrap}, topic)
    restorer.restore(states, 0)  # connections and metadata are warm: what follows is the restore itself
    started = time.monotonic()
    restored = restorer.restore_all(states, list(range(1, partitions)))
    took = time.monotonic() - started
    assert restored == sum(200 + p for p in range(1, partitions))
    assert took < 1.0, f"restore of {partitions - 1} partitions took {took:.2f}s"
    for p in range(partitions):
        assert states.covered(p) == 200 + p - 1
        assert states.get(b"p%d-k%04d" % (p, 199 + p), p) == b"v%d" % p
    output.put_changelog(3, [(b"p3-late", b"w")])  # a tail: only it is read again
    assert output.flush(30) is None
    assert restorer.restore_all(states, list(range(partitions))) == 1
    assert states.get(b"p3-late", 3) == b"w" and states.covered(3) == 203
    restorer.close()
    states.close_all()


def test_a_batch_is_one_changelog_record_and_restores_after_an_older_workers_single_records(
    kafka_bootstrap: str,
    make_topics: Callable,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """The writes of one consumed batch go out as one changelog record per partition (chunks of MAX_PAIRS), and a
    changelog an older worker wrote (one record per write) is still restored, in offset order, below the batches."""
    (topic,) = make_topics(partitions=2, compacted=True)
    older = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):  # an older worker's changelog: key = store key, value = winner
        older.produce(topic, b"old%d" % i, b"m%d" % i, 0)
    assert older.flush(30) == 0
    output = NativeOutput({"bootstrap.servers": kafka_bootstrap, "linger.ms": 1}, topic)
    output.put_changelog(0, [(b"m%d" % i, b"new%d" % i) for i in range(3, 8)])  # m3, m4 written again
    output.put_changelog(1, [(b"n%05d" % i, b"v") for i in range(MAX_PAIRS + 1)])  # two chunks
    assert output.flush(30) is None
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "probe"})
    highs = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in (0, 1)]
    probe.close()
    assert highs == [5 + 1, 2]  # 5 single records + 1 batch; MAX_PAIRS + 1 writes in 2 records
    states = PartitionStates(tmp_path / "s", 3600, lambda p, records: None)
    states.open(0)
    states.open(1)
    restorer = ChangelogRestorer({"bootstrap.servers": kafka_bootstrap}, topic)
    assert restorer.restore_all(states, [0, 1]) == 5 + 5 + MAX_PAIRS + 1  # writes, not records
    assert [states.get(b"m%d" % i, 0) for i in range(8)] == [b"old0", b"old1", b"old2"] + [
        b"new%d" % i for i in range(3, 8)
    ]
    assert states.get(b"n%05d" % MAX_PAIRS, 1) == b"v" and states.get(b"n00000", 1) == b"v"
    assert (states.covered(0), states.covered(1)) == (5, 1)
    restorer.close()
    states.close_all()
