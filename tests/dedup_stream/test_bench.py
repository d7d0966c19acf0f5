"""`make bench-dedup` runs for real at a tiny size (its own check that the worker emitted every event once, then
its RESULT line), and its rocksdict TTL store behaves like the worker's state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.dedup.__main__ import main as bench_dedup
from bench.dedup.logic_only import RdictStore
from dedup_stream.logic import Deduper, Origin, Verdict
from dedup_stream.synth import gatherer_copies, venue_events
from schemas import encode_raw


@pytest.mark.integration
def test_bench_dedup_tiny_run_drains_every_frame_and_prints_its_result(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bench raises unless the worker read all 3 x 100 frames and emitted exactly the 100 events, and unless its
    # one paced run (the smallest rate and window that still measure frames and hop latencies) read all it was fed.
    monkeypatch.setenv("MDPIPE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    paced = ["--rates", "1000", "--warmup-s", "1", "--paced-s", "2"]
    argv = ["--frames", "300", "--runs", "1", "--markets", "20", "--engine", "native", "--no-faust", *paced]
    assert bench_dedup(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["bench"] == "dedup" and result["engine"] == "native" and result["unit"] == "frames/s"
    assert (result["frames"], result["events"], result["runs"]) == (300, 100, 1)
    assert result["value"] > 0 and result["baseline"] > 0 and result["logic_only_frames_s"] > 0
    assert result["ratio"] == round(result["value"] / result["baseline"], 4)
    assert result["faust_frames_s"] is None and result["faust_noop_frames_s"] is None  # --no-faust
    assert list(result["paced"]) == ["1000"] and result["paced"]["1000"]["frames_s"] > 0


def test_rocksdict_ttl_store_dedups_synthetic_copies(tmp_path: Path) -> None:
    events = venue_events(500, markets=5, seed=2)
    store = RdictStore(str(tmp_path / "db"), ttl_s=3600)
    deduper = Deduper(store)
    verdicts = []
    for g in ("g1", "g2", "g3"):
        for offset, frame in enumerate(gatherer_copies(events, g)):
            verdicts.append(deduper.decide(encode_raw(frame), Origin(f"raw.{g}", 0, offset)).verdict)
    store.db.close()
    assert verdicts.count(Verdict.WON) == len(events)
    assert verdicts.count(Verdict.DUPLICATE) == 2 * len(events)


def test_bench_singles_counts_the_events_it_left_single(capsys: pytest.CaptureFixture[str]) -> None:
    # 40,000 first copies at 1,000 a second: the last expiry (39.001 s) judges those received by 9.001 s, events
    # 0..9,000; every hundredth of them got no copy: 91 singles.
    from bench.dedup.singles import main as bench_singles

    assert bench_singles(["--events", "40000", "--rate", "1000", "--runs", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line[len("RESULT ") :])
    assert result["bench"] == "dedup-singles" and result["singles"] == 91 and result["value"] > 0
