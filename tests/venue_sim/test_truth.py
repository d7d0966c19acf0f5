"""Ground-truth file: round trip, periodic flush, truncated tail."""

from __future__ import annotations

from pathlib import Path

from venue_sim.truth import TruthEvent, TruthWriter, read_truth


def _events(n: int) -> list[TruthEvent]:
    return [
        TruthEvent(i, "delta", f"KXSIM-E0-M{i % 3}", 1_000 + i, 5_000_000 + i, b'{"a":%d}' % i) for i in range(1, n + 1)
    ]


def test_round_trip_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "t.truth"
    events = _events(10_000)
    with TruthWriter(path, batch=777) as w:
        for ev in events:
            w.write(ev)
    assert list(read_truth(path)) == events


def test_flush_makes_events_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "t.truth"
    w = TruthWriter(path, flush_s=0.0, batch=10_000)
    for ev in _events(5):
        w.write(ev)
    assert list(read_truth(path)) == []
    w.maybe_flush()
    assert [e.id for e in read_truth(path)] == [1, 2, 3, 4, 5]
    w.close()


def test_truncated_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t.truth"
    with TruthWriter(path, batch=4) as w:
        for ev in _events(10):
            w.write(ev)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    assert [e.id for e in read_truth(path)] == [1, 2, 3, 4, 5, 6, 7, 8]
