"""``make bench-sim`` stays runnable: a tiny scenario end to end, checking the RESULT line's shape only."""

from __future__ import annotations

import json

import pytest

from bench.sim.__main__ import main


def test_bench_sim_tiny_run_prints_a_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--markets",
        "300",
        "--rate",
        "2000",
        "--chunk",
        "100",
        "--windows",
        "1",
        "--window-s",
        "0.5",
        "--settle-s",
        "0.2",
    ]
    assert main([*argv, "--saturate-rate", "4000"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last[len("RESULT ") :])
    for key in ("bench", "value", "unit", "baseline", "ratio", "runs", "rss_mb", "max_events_per_s"):
        assert key in result
    assert result["bench"] == "sim" and result["markets"] == 300 and result["runs"] == 1
    assert result["value"] > 0 and result["baseline"] > 0 and result["reader_errors"] == []
