"""bench-failover's reading of a restarted stage's log and of the hop marks (pure parts)."""

from __future__ import annotations

from pathlib import Path

from bench.failover.__main__ import parse_log_line, stage_figures

KILL_NS = 1_796_291_200_000_000_000  # 2026-12-03T09:46:40Z


def test_log_lines_parse_with_quoted_values_and_ms_timestamps() -> None:
    line = (
        "ts=2026-12-03T09:46:40.250Z level=info logger=dedup_stream.native event=partitions_assigned "
        'partitions="[0, 1, 2]" restored=2208 restore_s=4.105 note="a \\"quoted\\" word"'
    )
    d = parse_log_line(line)
    assert d["ts_ns"] == KILL_NS + 250_000_000
    assert (d["event"], d["partitions"], d["restored"], d["restore_s"]) == ("partitions_assigned", "[0, 1, 2]", "2208",
                                                                             "4.105")  # fmt: skip
    assert d["note"] == 'a "quoted" word'


def test_stage_figures_from_the_restarted_process_and_the_marks(tmp_path: Path) -> None:
    log = tmp_path / "dedup-1.log"
    log.write_text(
        "ts=2026-12-03T09:46:39.000Z level=info logger=x event=partitions_assigned restored=0 restore_s=0.1\n"  # before
        "ts=2026-12-03T09:46:40.300Z level=info logger=dedup_stream.cli event=dedup_start pid=7\n"
        "{not a log line}\n"
        "ts=2026-12-03T09:46:54.500Z level=info logger=x event=partitions_assigned restored=2208 restore_s=4.5\n"
    )
    firsts = {"gen": KILL_NS + 1_000, "recv": KILL_NS + 5_000_000, "dedup": KILL_NS + 14_600_000_000,
              "commit": KILL_NS + 15_250_000_000}  # fmt: skip
    fig = stage_figures("dedup-1", KILL_NS, log, firsts)
    assert fig == {
        "stage": "dedup-1",
        "started_s": 0.3,
        "rejoined_s": 10.0,  # assignment logged at 14.5 s, after a 4.5 s restore
        "restore_s": 4.5,
        "restored": 2208,
        "first_recv_s": 0.005,
        "first_dedup_s": 14.6,
        "first_commit_s": 15.25,
    }
    assert stage_figures("sink", KILL_NS, tmp_path / "missing.log", {}) == {"stage": "sink"}
