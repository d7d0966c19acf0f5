"""On-disk spool of Kafka records the gatherer could not hand to the broker (outage, full producer queue).

Append-only segment files ``<seq:012d>.spool`` in one directory; each record is
``crc32:u32 | topic_len:u16 | key_len:u32 | value_len:u32 | topic | key | value`` (big endian; the crc covers
everything after it). A torn tail (crash mid-write) fails its crc and ends that segment. The producer drains
the oldest segment first and deletes a segment only after every one of its records was acknowledged (or
spooled again), so a crash replays a segment at worst twice (at-least-once; dedup absorbs the copies).
Only a full spool (``max_bytes``) or a failing disk drops a record, and every frame of a dropped record is counted
in ``dropped`` (a bundle record, :mod:`schemas.raw_record`, carries several), exactly: appended records wait in a
small memory buffer written out with ``os.write`` (at ``flush()``, every ``_BUFFER`` bytes and before a segment is
read or closed); when a write fails (ENOSPC, EFBIG, EIO, a read-only directory...) the records that did not reach
the file in full are counted as dropped, the segment ends there (its torn tail is skipped by readers), one
``spool_write_failed`` line is logged, and writing pauses for ``retry_s`` (records meanwhile dropped and counted)
before a new segment is tried. A delivered segment
that cannot be deleted is remembered and never replayed again by this process (the next run replays it once:
at-least-once).

Order and durability (see :mod:`ingest.outage`): segments are read in the numeric order of their names;
:meth:`Spool.prepend` writes records that are older than everything spooled so far (what the producer still held
when the broker went away) as a segment numbered below all others. Bytes reach the kernel at every ``flush()``
(each service pass), so a killed process loses at most the last pass's records; they reach the disk at each
:meth:`Spool.sync_job` (the gatherer's fsync cadence, ``gather.spool_fsync_s``) and when a segment is closed, so a
power failure loses at most the records of the last cadence.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from mdpipe.logging import get_logger
from schemas.raw_record import frame_count

__all__ = ["Record", "Spool"]

log = get_logger(__name__)

_HEAD = struct.Struct(">IHII")
_BUFFER = 64 << 10  # write out once this much is buffered
Record = tuple[str, bytes, bytes]  # topic, key, value


class Spool:
    """Bounded FIFO of records on disk (see module docstring). Not thread-safe."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int,
        segment_bytes: int = 16 << 20,
        retry_s: float = 1.0,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.retry_s = retry_s
        self._fd: int | None = None
        self._writer_seq = -1
        self._writer_size = 0
        self._buf = bytearray()
        self._buf_ends: list[int] = []  # end offset in _buf of each buffered record
        self._buf_frames: list[int] = []  # frames carried by each buffered record (a bundle carries several)
        self._paused_until = 0.0  # monotonic: no write attempts before this (after a failed write)
        self._undeletable: set[Path] = set()  # delivered segments whose unlink failed: never replayed again
        self._unsynced = False  # bytes written to the current segment since its last fsync
        self._dir_unsynced = False  # a segment was created since the directory's last fsync
        self.bytes = 0
        self.records = 0
        self.dropped = 0
        self.write_errors = 0
        segments = self.segments()
        for seg in segments:
            self.bytes += seg.stat().st_size
            self.records += sum(1 for _ in self.read(seg))
        self._next_seq = _seq_of(segments[-1]) + 1 if segments else 0

    def segments(self) -> list[Path]:
        """Segment files, oldest first (numeric order of their names: :meth:`prepend` numbers below zero)."""
        return sorted((p for p in self.dir.glob("*.spool") if p not in self._undeletable), key=_seq_of)

    def __len__(self) -> int:
        return self.records

    def append(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Buffer one record for the current segment; False (``dropped`` += its frames) when the spool is full, or
        the disk failed less than ``retry_s`` ago, or a new segment cannot be created. A record accepted here that
        later fails to reach the disk is counted in ``dropped`` then. ``dropped`` counts frames: a bundle record
        (:mod:`schemas.raw_record`) counts each frame it carries."""
        t = topic.encode()
        k = key or b""
        body = _HEAD.pack(0, len(t), len(k), len(value))[4:] + t + k + value
        size = 4 + len(body)
        if self.bytes + size > self.max_bytes or self._paused():
            self.dropped += frame_count(value)
            return False
        if self._fd is None or self._writer_size >= self.segment_bytes:
            self.close_writer()
            if self._paused():  # closing it failed just now
                self.dropped += frame_count(value)
                return False
            try:
                self._open_segment()
            except OSError as exc:
                self._write_failed(exc, lost=1, lost_bytes=0, lost_frames=frame_count(value))
                return False
        self._buf += struct.pack(">I", zlib.crc32(body))
        self._buf += body
        self._buf_ends.append(len(self._buf))
        self._buf_frames.append(frame_count(value))
        self._writer_size += size
        self.bytes += size
        self.records += 1
        if len(self._buf) >= _BUFFER:
            self._write_out()
        return True

    def _paused(self) -> bool:
        return self._paused_until > 0 and time.monotonic() < self._paused_until

    def _open_segment(self) -> None:
        seq = self._next_seq
        self._next_seq += 1
        self._fd = os.open(self.dir / f"{seq:012d}.spool", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._writer_seq = seq
        self._writer_size = 0
        self._dir_unsynced = True

    def _write_out(self) -> bool:
        """Write the buffered records to the current segment; False when the disk failed (losses counted)."""
        if not self._buf or self._fd is None:
            return True
        done = 0
        try:
            with memoryview(self._buf) as view:
                while done < len(view):
                    n = os.write(self._fd, view[done:])
                    if n <= 0:
                        raise OSError("spool segment accepted no bytes")
                    done += n
        except OSError as exc:
            kept = sum(1 for end in self._buf_ends if end <= done)
            self._write_failed(
                exc,
                lost=len(self._buf_ends) - kept,
                lost_bytes=len(self._buf) - done,
                lost_frames=sum(self._buf_frames[kept:]),
                buffered=True,
            )
            return False
        self._unsynced = True
        self._buf.clear()
        self._buf_ends.clear()
        self._buf_frames.clear()
        return True

    def _write_failed(self, exc: OSError, lost: int, lost_bytes: int, lost_frames: int, buffered: bool = False) -> None:
        """Count the records (``lost``, carrying ``lost_frames`` frames) that did not reach the disk; end this segment
        (a torn record may end it); pause."""
        if buffered:
            self.records -= lost  # they were counted in when buffered
            self.bytes -= lost_bytes  # the bytes that did reach the file stay (a torn tail, released with it)
            self._buf.clear()
            self._buf_ends.clear()
            self._buf_frames.clear()
        self.dropped += lost_frames
        self.write_errors += 1
        self._abandon_writer()
        self._paused_until = time.monotonic() + self.retry_s
        log.error(
            "spool_write_failed",
            dir=str(self.dir),
            errno=exc.errno,
            error=str(exc)[:200],
            records_lost=lost,
            dropped=self.dropped,
            retry_s=self.retry_s,
        )

    def _abandon_writer(self) -> None:
        """Close the current segment without writing anything more to it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close_writer(self) -> None:
        """Write out and close the current segment (its records are then readable by :meth:`take_oldest`)."""
        if self._fd is None:
            return
        if self._write_out():
            try:
                os.fsync(self._fd)
                self._unsynced = False
            except OSError as exc:  # the kernel has the bytes; whether they are durable is unknown
                self.write_errors += 1
                log.error("spool_fsync_failed", dir=str(self.dir), errno=exc.errno, error=str(exc)[:200])
        self._abandon_writer()

    def flush(self) -> None:
        """Hand the buffered records to the kernel (called every service pass)."""
        self._write_out()

    def sync_job(self) -> Callable[[], float] | None:
        """Make what was appended so far durable: writes the buffer out and returns a function to run in a worker
        thread (the fsync may take long on a busy disk; appending goes on meanwhile) that fsyncs the current segment
        (and the directory when a segment was created since) and returns the seconds it took; None when nothing is
        unsynced. A failing fsync is logged and counted in ``write_errors``."""
        self._write_out()
        if not (self._unsynced and self._fd is not None) and not self._dir_unsynced:
            return None
        fd = os.dup(self._fd) if self._unsynced and self._fd is not None else None
        sync_dir = self._dir_unsynced
        self._unsynced = self._dir_unsynced = False

        def run() -> float:
            t0 = time.monotonic()
            try:
                if fd is not None:
                    os.fsync(fd)
                if sync_dir:
                    dir_fd = os.open(self.dir, os.O_RDONLY)
                    try:
                        os.fsync(dir_fd)
                    finally:
                        os.close(dir_fd)
            except OSError as exc:
                self.write_errors += 1
                log.error("spool_fsync_failed", dir=str(self.dir), errno=exc.errno, error=str(exc)[:200])
            finally:
                if fd is not None:
                    os.close(fd)
            return time.monotonic() - t0

        return run

    def prepend(self, records: list[Record]) -> int:
        """Write ``records`` (oldest first) as one new segment read before every other, fsynced; returns how many
        were kept. For frames older than everything already spooled: what the producer still held when the broker
        went away. Records past ``max_bytes`` or lost to a failing disk are counted in ``dropped``."""
        if not records:
            return 0
        existing = [_seq_of(p) for p in self.dir.glob("*.spool")]
        seq = min([*existing, self._next_seq]) - 1
        path = self.dir / f"{seq:012d}.spool"
        out = bytearray()
        kept = 0
        size = 0
        for topic, key, value in records:
            t = topic.encode()
            k = key or b""
            body = _HEAD.pack(0, len(t), len(k), len(value))[4:] + t + k + value
            if self.bytes + size + 4 + len(body) > self.max_bytes:
                break
            out += struct.pack(">I", zlib.crc32(body))
            out += body
            size += 4 + len(body)
            kept += 1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with memoryview(out) as view:
                    done = 0
                    while done < len(view):
                        done += os.write(fd, view[done:])
                os.fsync(fd)
            finally:
                os.close(fd)
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            self._write_failed(exc, lost=len(records), lost_bytes=0, lost_frames=_frames(records))
            return 0
        self.bytes += size
        self.records += kept
        self.dropped += _frames(records[kept:])
        if kept < len(records):
            log.error(
                "spool_full_frames_dropped", dropped=self.dropped, spool_bytes=self.bytes, max_bytes=self.max_bytes
            )
        return kept

    def take_oldest(self, busy: set[Path] | frozenset[Path] = frozenset()) -> tuple[Path, list[Record]] | None:
        """The oldest segment not in ``busy`` and its records (closing it first if it is being written)."""
        segments = [s for s in self.segments() if s not in busy]
        if not segments:
            return None
        seg = segments[0]
        if self._fd is not None and _seq_of(seg) == self._writer_seq:
            self.close_writer()
        return seg, list(self.read(seg))

    def release(self, segment: Path, records: int) -> None:
        """Delete a fully delivered segment (one that cannot be deleted is never handed out again)."""
        try:
            size = segment.stat().st_size
        except OSError:
            size = 0
        try:
            segment.unlink(missing_ok=True)
        except OSError as exc:
            self._undeletable.add(segment)
            log.error("spool_release_failed", segment=str(segment), errno=exc.errno, error=str(exc)[:200])
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


def _seq_of(segment: Path) -> int:
    """A segment's number (its name; :meth:`Spool.prepend` writes negative ones)."""
    try:
        return int(segment.stem)
    except ValueError:
        return 1 << 62  # not ours: read last


def _frames(records: list[Record]) -> int:
    """Frames carried by ``records`` (a bundle record carries several)."""
    return sum(frame_count(value) for _, _, value in records)
