"""`mdpipe status` aggregation: rates from two scrapes, ratios and per-gatherer figures."""

from __future__ import annotations

from mdpipe.probe import Sample
from mdpipe.status_cli import _dedup, _gatherer, _render, _sink


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, labels, value)


def test_gatherer_rates_and_totals() -> None:
    before = [s("mdpipe_gather_frames_total", 100, kind="delta"), s("mdpipe_gather_frames_total", 50, kind="trade")]
    after = [
        s("mdpipe_gather_frames_total", 300, kind="delta"),
        s("mdpipe_gather_frames_total", 70, kind="trade"),
        s("mdpipe_gather_connections_up", 3, gatherer="g1"),
        s("mdpipe_gather_gaps_total", 2, gatherer="g1"),
    ]
    g = _gatherer(before, after, 2.0)
    assert g["frames_per_s"] == 110.0
    assert g["frames_by_kind"] == {"delta": 300, "trade": 70}
    assert (g["connections_up"], g["gaps"]) == (3, 2)


def test_dedup_duplicate_ratio_and_lags() -> None:
    after = [
        s("mdpipe_dedup_frames_in_total", 100, gatherer="g1"),
        s("mdpipe_dedup_frames_in_total", 100, gatherer="g2"),
        s("mdpipe_dedup_frames_duplicate_total", 20, gatherer="g1"),
        s("mdpipe_dedup_frames_duplicate_total", 80, gatherer="g2"),
        s("mdpipe_dedup_sync_lag_seconds", 0.5, gatherer="g2"),
        s("mdpipe_dedup_events_out_total", 100),
    ]
    d = _dedup([s("mdpipe_dedup_events_out_total", 40)], after, 1.0)
    assert d["duplicate_ratio"] == 0.5
    assert d["sync_lag_s"] == {"g2": 0.5}
    assert d["events_per_s"] == 60.0


def test_render_shows_every_section() -> None:
    data = {
        "gatherers": {"gather-g1": {"up": True, **_gatherer([], [], 1.0)}},
        "dedup": {"dedup": {"up": True, **_dedup([], [], 1.0)}},
        "sink": {"sink": {"up": True, **_sink([], [s("mdpipe_sink_rows_total", 5, table="trades")], 1.0)}},
        "other": [],
        "topics": [
            {"topic": "events", "partitions": 6, "records": 10},
            {"topic": "dlq", "partitions": 0, "records": 0},
        ],
    }
    text = _render(data)
    for needle in ("GATHERERS", "gather-g1", "DEDUP", "SINK", "TOPICS", "events", "(missing"):
        assert needle in text
