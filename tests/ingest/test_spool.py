"""On-disk spool: FIFO across segments, survives reopen, torn tails, bounded size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# Run in a child process: RLIMIT_FSIZE makes the kernel refuse writes past ``limit`` bytes per file (EFBIG, with
# SIGXFSZ ignored), so the failure comes through the spool's real write path, exactly like a disk that fills up.
_FILL_THE_DISK = r"""
import json, resource, signal, sys
from ingest.spool import Spool
directory, limit, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
spool = Spool(directory, max_bytes=1 << 30, segment_bytes=1 << 20)
spool.retry_s = 0.0  # try a new segment right after each failure (each one fails again at the limit)
accepted = 0
for i in range(count):
    accepted += spool.append("raw.g1", b"M%d" % (i % 7), b"value-%06d-" % i + b"x" * 200)
    if i % 37 == 0:
        spool.flush()
spool.close()
print(json.dumps({"dropped": spool.dropped, "records": len(spool), "accepted": accepted}))
"""


def test_a_disk_that_fills_up_drops_exactly_the_records_it_did_not_keep(tmp_path: Path) -> None:
    limit, count = 20_000, 2_000
    out = subprocess.run(
        [sys.executable, "-c", _FILL_THE_DISK, str(tmp_path), str(limit), str(count)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    segments = sorted(tmp_path.glob("*.spool"))
    assert all(seg.stat().st_size <= limit for seg in segments)
    kept = [int(v[6:12]) for seg in segments for _, _, v in Spool.read(seg)]
    assert kept == sorted(set(kept)), "FIFO order, no record twice"
    assert report["dropped"] > 0 and len(segments) > 5, "the limit was hit again and again, writing went on"
    # every record is either on disk or counted as dropped -- none vanishes uncounted
    assert len(kept) + report["dropped"] == count
    assert report["records"] == len(kept)
    assert kept[-1] > count - 100, "records after the failures are kept"
    assert "spool_write_failed" in out.stderr


def test_writing_pauses_after_a_failure_and_drops_are_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, retry_s=60.0)
    assert spool.append("raw.g1", b"k", b"before")
    spool.flush()
    (tmp_path / "000000000000.spool").unlink()
    os.rmdir(tmp_path)  # the directory disappears: the next segment cannot be created
    spool.segment_bytes = 0  # roll on the next append
    assert not spool.append("raw.g1", b"k", b"lost")
    assert not spool.append("raw.g1", b"k", b"lost-while-paused")
    assert spool.dropped == 2 and spool.write_errors == 1
