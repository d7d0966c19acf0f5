"""A helper process that builds COPY rows for the loader, so that decoding uses a second core.

The loader's consumer thread is the sink's bottleneck (decode + row encoding in Python, ~5 us per record,
under one GIL). For each consumed chunk the batch sends the tail of the chunk's ``events`` values to this
helper, builds the head itself meanwhile, then takes the helper's rows (:meth:`sink.batch.Batch.add_many`).
Only pure work crosses the pipe: values in, rows and (index, reason) dead letters out. Offsets, batches and
transactions stay in the loader, so exactly-once is unchanged. If the helper dies, the batch builds everything
itself from then on (logged once).

Off by default (``sink.helper_share = 0``): on the shared 2-core development machine PostgreSQL, the broker and
other work already use the second core, and ``make bench-sink --helper-share 0.5`` measured no better than
without (78-116K vs 60-147K rows/s, alternating runs, load average 2-4); each process also warms its own value
caches. Use it (0.5) where the sink host has idle cores.

Run as ``python -m sink.helper`` (a plain subprocess: no multiprocessing start method re-running the CLI).
Frames on stdin/stdout: 8-byte big-endian length, then a pickle.
"""

from __future__ import annotations

import gc
import pickle
import struct
import subprocess
import sys
import time
from typing import IO, Any

from mdpipe.logging import get_logger

__all__ = ["RowHelper", "serve"]

log = get_logger(__name__)
_LEN = struct.Struct(">Q")
Rows = tuple[dict[str, list[bytes]], list[tuple[int, str]], int, bytes]  # rows, dead, skipped, row origins


def _write(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)))
    out.write(data)
    out.flush()


def _read(inp: IO[bytes]) -> Any:
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("row helper pipe closed")
    (size,) = _LEN.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        raise EOFError("row helper pipe closed mid-frame")
    return pickle.loads(data)


class RowHelper:
    """The loader's end: one request in flight at a time (submit, then result)."""

    def __init__(self, share: float, min_records: int = 1000) -> None:
        self.share = share
        self.min_records = min_records
        self.cpu_s = 0.0  # CPU seconds the helper spent building rows (reported with each result)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "sink.helper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def submit(self, payloads: list[bytes], from_ms: int | None, to_ms: int | None) -> bool:
        """Send values to build; False (build them yourself) when the helper is gone."""
        if self._proc is None:
            return False
        try:
            _write(self._proc.stdin, (payloads, from_ms, to_ms))  # type: ignore[arg-type]
            return True
        except (OSError, ValueError) as exc:
            self._failed(exc)
            return False

    def result(self) -> Rows | None:
        """The rows of the last :meth:`submit`; None (build them yourself) when the helper died meanwhile."""
        if self._proc is None:
            return None
        try:
            rows, dead, skipped, stamps, cpu_s = _read(self._proc.stdout)  # type: ignore[arg-type]
            self.cpu_s += cpu_s
            return rows, dead, skipped, stamps
        except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            self._failed(exc)
            return None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _failed(self, exc: BaseException) -> None:
        log.warning("row_helper_failed", error=repr(exc), building="in the consumer thread from now on")
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The helper's loop: (values, from_ms, to_ms) in, (rows, dead, skipped, row origins (sink.latency), CPU
    seconds) out, until the pipe
    closes."""
    from sink.batch import build_rows
    from sink.rowcodec import fast_build

    fast = fast_build()

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    while True:
        try:
            payloads, from_ms, to_ms = _read(inp)
        except EOFError:
            return
        started = time.process_time()
        rows: dict[str, list[bytes]] = {}
        stamps = bytearray()
        dead, skipped = build_rows(payloads, from_ms, to_ms, rows, fast=fast, stamps=stamps)
        _write(out, (rows, dead, skipped, bytes(stamps), time.process_time() - started))


if __name__ == "__main__":
    import os

    frames = os.fdopen(os.dup(1), "wb")  # the frames get the original stdout; stray prints go to stderr
    os.dup2(2, 1)
    serve(sys.stdin.buffer, frames)
