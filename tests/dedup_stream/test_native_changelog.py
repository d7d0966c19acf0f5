"""Native engine's changelog on the real broker: acknowledgement marks that hold events, resumable restores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dedup_stream.native_output import NativeOutput
from dedup_stream.partition_state import PartitionStates
from dedup_stream.restore import ChangelogRestorer

pytestmark = pytest.mark.integration


def test_changelog_mark_is_acked_only_after_its_records(kafka_bootstrap: str, make_topics: Callable) -> None:  # type: ignore[type-arg]
    (topic,) = make_topics(partitions=2, compacted=True)
    output = NativeOutput({"bootstrap.servers": kafka_bootstrap, "linger.ms": 1}, topic)
    output.put_changelog(0, [(b"a%d" % i, b"v") for i in range(3)])
    output.put_changelog(1, [(b"b", b"v")])
    mark = output.changelog_mark()
    assert mark == {0: 3, 1: 1}
    assert not output.changelog_acked(mark)  # delivery reports are only served by poll/flush
    assert output.flush(30) is None
    assert output.changelog_acked(mark)
    assert output.delivered == {0: 2, 1: 0}
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
    output.put_changelog(0, [(b"k%06d" % i, b"v") for i in range(total)])
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
