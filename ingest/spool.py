"""On-disk spool of Kafka records the gatherer could not hand to the broker (outage, full producer queue).

Append-only segment files ``<seq:012d>.spool`` in one directory; each record is
``crc32:u32 | topic_len:u16 | key_len:u32 | value_len:u32 | topic | key | value`` (big endian; the crc covers
everything after it). A torn tail (crash mid-write) fails its crc and ends that segment. The producer drains
the oldest segment first and deletes a segment only after every one of its records was acknowledged (or
spooled again), so a crash replays a segment at worst twice (at-least-once; dedup absorbs the copies).
Only a full spool (``max_bytes``) or a full disk drops a record, and that is counted by the caller.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["Record", "Spool"]

_HEAD = struct.Struct(">IHII")
Record = tuple[str, bytes, bytes]  # topic, key, value


class Spool:
    """Bounded FIFO of records on disk (see module docstring). Not thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, segment_bytes: int = 16 << 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._writer: BinaryIO | None = None
        self._writer_seq = -1
        self._writer_size = 0
        self.bytes = 0
        self.records = 0
        self.dropped = 0
        segments = self.segments()
        for seg in segments:
            self.bytes += seg.stat().st_size
            self.records += sum(1 for _ in self.read(seg))
        self._next_seq = int(segments[-1].stem) + 1 if segments else 0

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(self.dir.glob("*.spool"))

    def __len__(self) -> int:
        return self.records

    def append(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Write one record; False (and ``dropped`` += 1) when the spool or the disk is full."""
        t = topic.encode()
        k = key or b""
        body = _HEAD.pack(0, len(t), len(k), len(value))[4:] + t + k + value
        size = 4 + len(body)
        if self.bytes + size > self.max_bytes:
            self.dropped += 1
            return False
        try:
            if self._writer is None or self._writer_size >= self.segment_bytes:
                self._roll()
            assert self._writer is not None
            self._writer.write(struct.pack(">I", zlib.crc32(body)) + body)
        except OSError:
            # A partial record may now end this segment: never append after it (readers stop at the first bad
            # CRC), the next record starts a new segment.
            self._abandon_writer()
            self.dropped += 1
            return False
        self._writer_size += size
        self.bytes += size
        self.records += 1
        return True

    def _roll(self) -> None:
        self.close_writer()
        self._writer_seq = self._next_seq
        self._next_seq += 1
        self._writer = open(self.dir / f"{self._writer_seq:012d}.spool", "ab")  # noqa: SIM115
        self._writer_size = 0

    def _abandon_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def take_oldest(self, busy: set[Path] | frozenset[Path] = frozenset()) -> tuple[Path, list[Record]] | None:
        """The oldest segment not in ``busy`` and its records (closing it first if it is being written)."""
        segments = [s for s in self.segments() if s not in busy]
        if not segments:
            return None
        seg = segments[0]
        if self._writer is not None and int(seg.stem) == self._writer_seq:
            self.close_writer()
        return seg, list(self.read(seg))

    def release(self, segment: Path, records: int) -> None:
        """Delete a fully delivered segment."""
        size = segment.stat().st_size if segment.exists() else 0
        segment.unlink(missing_ok=True)
        self.bytes = max(0, self.bytes - size)
        self.records = max(0, self.records - records)

    @staticmethod
    def read(segment: Path) -> Iterator[Record]:
        data = segment.read_bytes()
        pos = 0
        while pos + _HEAD.size <= len(data):
            crc, tlen, klen, vlen = _HEAD.unpack_from(data, pos)
            end = pos + _HEAD.size + tlen + klen + vlen
            if end > len(data) or zlib.crc32(data[pos + 4 : end]) != crc:
                return  # torn tail
            p = pos + _HEAD.size
            yield data[p : p + tlen].decode(), data[p + tlen : p + tlen + klen], data[p + tlen + klen : end]
            pos = end

    def close(self) -> None:
        self.close_writer()
