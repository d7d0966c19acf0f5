"""The demo's live progress block: rates per stage, markets subscribed, seq gaps, lags in seconds."""

from __future__ import annotations

from ops.demo_cli import render_progress
from ops.pipeline_run import Progress


def test_progress_shows_markets_gaps_and_lags_in_seconds() -> None:
    p = Progress(elapsed_s=30.0, duration_s=120.0, venue_events=150_000, events=140_000, dedup_lag=30_000)
    p.raw = {"g1": 150_000, "g2": 149_000}
    p.rates = {"venue": 5_000.0, "g1": 5_000.0, "g2": 5_000.0, "events": 4_900.0}
    p.dedup_lag_s = 3.0
    p.sink_lag = 1_200
    p.stages = {
        "gatherers": {
            "gather-g1": {"subscribed_markets": 20_000.0},
            "gather-g2": {"subscribed_markets": 19_500.0},
        },
        "dedup": {
            "dedup-1": {"sync_lag_s": {"g1": 0.0, "g2": 0.25}, "gap_reports": {"g2": 1.0}},
            "dedup-2": {"sync_lag_s": {"g1": 0.5, "g2": 0.0}, "gap_reports": {"g2": 1.0}},
        },
        "sink": {"sink": {"rows_per_s": 4_800.0, "lag_s": 0.4}},
    }
    text = render_progress(p)
    assert "[#######" in text and "30/120s" in text
    assert "g1  20,000" in text and "g2  19,500" in text
    assert "seq gaps g1=0 g2=2" in text  # as dedup counted the gatherers' gap reports, summed over workers
    assert "lag 30,000 records (~3.0 s)" in text
    assert "sync lag s g1=0.50 g2=0.25" in text  # the worst worker per gatherer
    assert "4,800 rows/s lag 1,200 events (0.4 s)" in text


def test_progress_without_scraped_stages_still_renders() -> None:
    text = render_progress(Progress(elapsed_s=130.0, duration_s=120.0, raw={"g1": 10}))
    assert "(draining)" in text and "sync lag s -" in text
