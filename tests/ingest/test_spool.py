"""On-disk spool: FIFO across segments, survives reopen, torn tails, bounded size."""

from __future__ import annotations

from pathlib import Path

from ingest.spool import Spool


def test_fifo_across_segments_and_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    for i in range(50):
        assert spool.append("raw.g1", f"M{i}".encode(), f"value-{i}".encode())
    assert len(spool) == 50 and len(spool.segments()) > 1
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert len(again) == 50
    seen = []
    while (taken := again.take_oldest()) is not None:
        segment, records = taken
        seen += records
        again.release(segment, len(records))
    assert [v for _, _, v in seen] == [f"value-{i}".encode() for i in range(50)]
    assert seen[0] == ("raw.g1", b"M0", b"value-0")
    assert len(again) == 0 and again.bytes == 0


def test_torn_tail_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append("dlq", None, b"a" * 100)
    spool.append("dlq", None, b"b" * 100)
    spool.close()
    seg = spool.segments()[0]
    seg.write_bytes(seg.read_bytes()[:-10])
    assert [v for _, _, v in Spool.read(seg)] == [b"a" * 100]


def test_full_spool_drops_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300)
    results = [spool.append("raw.g1", b"k", b"x" * 100) for _ in range(5)]
    assert results[:2] == [True, True] and not all(results)
    assert spool.dropped == results.count(False) > 0


def test_a_failed_write_never_leaves_later_records_behind_a_torn_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    assert spool.append("raw.g1", b"k", b"before")

    class FailingWriter:
        """A disk that accepts part of a record, then fails (ENOSPC)."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def write(self, data: bytes) -> int:
            self.inner.write(data[:7])  # type: ignore[attr-defined]
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.inner.close()  # type: ignore[attr-defined]

    spool._writer = FailingWriter(spool._writer)  # type: ignore[assignment]
    assert not spool.append("raw.g1", b"k", b"lost-to-a-full-disk")
    assert spool.dropped == 1
    assert spool.append("raw.g1", b"k", b"after")  # goes to a new segment, not after the torn bytes
    spool.close()
    values = [v for seg in Spool(tmp_path, 1 << 20).segments() for _, _, v in Spool.read(seg)]
    assert values == [b"before", b"after"]
