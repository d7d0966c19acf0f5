"""The demo turns every real-venue behaviour on, injects the new faults, and shows what the venue did."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

import venue_sim.app
from mdpipe.config import Config, SimConfig
from ops.demo_cli import render_progress
from ops.pipeline_run import FaultPlan, PipelineRun, Progress, RunOptions, venue_args
from venue_sim import cli as sim_cli


class _Captured(Exception):
    def __init__(self, options: Any) -> None:
        super().__init__("captured")
        self.options = options


def _sim_options(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sim section `mdpipe sim` would run with for these arguments (parsed by the real parser and run())."""
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers())
    ns = parser.parse_args(["sim", *args])

    def capture(section: SimConfig, options: Any = None, venue: str = "") -> None:
        raise _Captured(section)

    monkeypatch.setattr(venue_sim.app, "VenueSim", capture)
    with pytest.raises(_Captured) as got:
        sim_cli.run(ns, Config())
    return got.value.options


def test_demo_defaults_turn_every_behaviour_on_and_the_sim_accepts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    venue = RunOptions().venue
    opts = _sim_options(["--no-auth", *venue_args(venue)], monkeypatch)
    assert opts.dormant_share == 0.7 and opts.rest_lag_s == 30.0 and opts.activate_after_s == 3.0
    assert opts.pause_per_s > 0 and opts.flap_share > 0 and opts.metadata_per_s > 0
    assert opts.unknown_lifecycle_per_s > 0 and opts.fee_update_per_s > 0 and opts.event_lifecycle
    assert opts.churn_per_s > 0 and opts.checkpoint_s == 20.0
    plain = _sim_options(["--no-auth", *venue_args(SimConfig())], monkeypatch)
    assert plain.dormant_share == 0 and plain.rest_lag_s == 0 and plain.pause_per_s == 0
    assert not plain.event_lifecycle
    assert FaultPlan().redeliver_at and FaultPlan().bad_number_at
    assert FaultPlan.none().redeliver_at == () and FaultPlan.none().bad_number_at == ()


BEHAVIOURS = (
    "dormant_share", "rest_lag_s", "churn_per_s", "activate_after_s", "pause_per_s", "pause_markets", "pause_s",
    "flap_share", "metadata_per_s", "unknown_lifecycle_per_s", "fee_update_per_s", "event_lifecycle", "checkpoint_s",
)  # fmt: skip


def test_a_run_without_the_demos_behaviours_gives_the_emulator_the_sim_sections_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's venue is the ``sim`` config section itself: a run that does not ask for the demo's behaviours
    (the end-to-end tests) starts `mdpipe sim` with exactly what a bare `mdpipe sim` takes from the config's
    defaults -- no second set of defaults (the old ``VenueBehaviour.plain()`` sent flap_share 0.3 and
    pause_markets 6 against the config's 0.25 and 8)."""
    bare = _sim_options(["--no-auth"], monkeypatch)
    plain = _sim_options(["--no-auth", *venue_args(SimConfig())], monkeypatch)
    assert {name: getattr(plain, name) for name in BEHAVIOURS} == {name: getattr(bare, name) for name in BEHAVIOURS}
    assert {name: getattr(bare, name) for name in BEHAVIOURS} == {
        name: getattr(SimConfig(), name) for name in BEHAVIOURS
    }


def test_new_faults_fire_once_on_the_busiest_connection_with_notes() -> None:
    run = PipelineRun(Config(), RunOptions())
    calls: list[tuple[str, Any]] = []

    def admin(path: str, body: dict[str, Any] | None = None, venue: str = "") -> Any:
        calls.append((path, body))
        if path == "/_sim/stats":
            return {"connections": [{"conn_id": 4, "data_messages": 10}, {"conn_id": 7, "data_messages": 900}]}
        return {"ok": True}

    run.sim_admin = admin  # type: ignore[method-assign]
    plan = FaultPlan(None, None, None, redeliver_at=(0.3,), bad_number_at=((0.5, "nan"),))
    run.options = RunOptions(faults=plan)
    done: set[str] = set()
    for fraction in (0.1, 0.35, 0.4, 0.6, 0.9):
        run._faults_due(fraction, done, [])
    faults = [body for path, body in calls if path == "/_sim/faults"]
    assert faults == [{"fault": "redeliver", "conn_id": 7}, {"fault": "badnumber", "variant": "nan"}]
    assert [n.split(" ", 1)[1] for n in run.events_log] == [
        "fault: venue re-delivered a seq on connection 7",
        "fault: venue sent an orderbook_delta with a bad number (nan)",
    ]


def test_progress_shows_what_the_venue_did() -> None:
    p = Progress(elapsed_s=60.0, duration_s=120.0, raw={"g1": 1})
    p.venue = {
        "paused": 12,
        "resumed": 11,
        "flaps": 4,
        "created": 4,
        "activated_created": 3,
        "event_lifecycle": 1,
        "metadata_updates": 9,
        "metadata_legacy": 3,
        "unknown_lifecycle": 2,
        "fee_updates": 5,
        "redelivered": 1,
        "bad_numbers": 2,
        "dormant_markets": 14_000,
        "paused_markets": 1,
        "rest_lag_s": 30.0,
    }
    text = render_progress(p)
    for part in (
        "12 paused/11 resumed (4 fast repeats, 1 now)",
        "4 created (3 activated)",
        "9 metadata (3 old form)",
        "2 unknown lifecycle types",
        "5 fee updates",
        "1 redelivered",
        "2 bad numbers",
        "14,000 dormant markets",
        "REST lag 30 s",
    ):
        assert part in text, part
    assert "paused" not in render_progress(Progress(elapsed_s=1.0, duration_s=120.0, raw={"g1": 1}))


def _demo_args(*argv: str) -> argparse.Namespace:
    from ops import demo_cli

    parser = argparse.ArgumentParser()
    demo_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["demo", *argv])


def test_demo_venue_choices_are_the_registry_and_all() -> None:
    """``--venue`` takes every venue of :func:`venues.names` and ``all``; the run gets the venues it names, each
    emulator its own child, gatherers per venue with their own ids (raw topics), and an unknown name is refused."""
    import venues
    from ops.demo_cli import chosen_venues

    config = Config()
    assert chosen_venues(_demo_args(), config) == (config.venue.name,)
    for name in venues.names():
        assert chosen_venues(_demo_args("--venue", name), config) == (name,)
    assert chosen_venues(_demo_args("--venue", "all"), config) == venues.names()
    with pytest.raises(SystemExit):
        _demo_args("--venue", "no-such-venue")

    one = PipelineRun(config, RunOptions(venues=(venues.names()[-1],), gatherers=2))
    assert one.gatherer_ids == ["g1", "g2"] and one.sim_name(one.venue_names[0]) == "sim"
    every = PipelineRun(config, RunOptions(venues=venues.names(), gatherers=2))
    assert len(set(every.gatherer_ids)) == 2 * len(venues.names())
    assert {every.venue_of_gatherer(g) for g in every.gatherer_ids} == set(venues.names())
    assert len({every.sim_name(v) for v in venues.names()}) == len(venues.names())
    assert len({every.truth_paths[v] for v in venues.names()}) == len(venues.names())
    for gid in every.gatherer_ids:
        assert every._env(every.venue_of_gatherer(gid))["MDPIPE_VENUE__NAME"] == every.venue_of_gatherer(gid)


def test_silent_faults_of_a_venue_are_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    import venues

    name = venues.names()[0]
    monkeypatch.setattr(type(venues.get_venue(name)), "silent_faults", frozenset({"redeliver"}))
    run = PipelineRun(Config(), RunOptions(venues=(name,)))
    calls: list[Any] = []
    run.sim_admin = lambda path, body=None, venue="": calls.append((path, body)) or {}  # type: ignore[method-assign]
    run.options = RunOptions(venues=(name,), faults=FaultPlan(None, 0.2, None, redeliver_at=(0.3,), bad_number_at=()))
    done: set[str] = set()
    for fraction in (0.25, 0.35, 0.9):
        run._faults_due(fraction, done, [])
    assert [body for path, body in calls if path == "/_sim/faults"] == [{"fault": "drop", "conn_id": 2}]
    assert any("fault redeliver skipped" in note for note in run.events_log)


def test_reports_of_several_venues_combine_into_one_with_each_kept() -> None:
    from ops.pipeline_run import combine_reports

    a = {"clean": True, "rows": 10, "missing": 0, "held_by": {"0": 1, "1": 2}, "gatherers": ["a-g1"],
         "latency_ms": {"p50": 5.0, "p99": 9.0}, "book_examples": [],
         "latency_by_kind": {"trade": {"p99": 30.0}, "delta": {"p99": 9.0}}}  # fmt: skip
    b = {"clean": False, "rows": 5, "missing": 2, "held_by": {"0": 3, "1": 4}, "gatherers": ["b-g1"],
         "latency_ms": {"p50": 7.0, "p99": 20.0}, "book_examples": ["x"],
         "latency_by_kind": {"delta": {"p99": 20.0}, "trade": {"p99": 3.0}}}  # fmt: skip
    both = combine_reports({"a": a, "b": b})
    assert both["rows"] == 15 and both["missing"] == 2 and both["held_by"] == {"0": 4, "1": 6}
    assert both["gatherers"] == ["a-g1", "b-g1"] and both["book_examples"] == ["x"]
    assert both["latency_ms"] == {"p50": 7.0, "p99": 20.0}  # the slowest venue's
    assert both["latency_by_kind"] == {"delta": {"p99": 20.0}, "trade": {"p99": 30.0}}  # per kind, the slowest's
    assert not both["clean"] and both["venues"] == {"a": a, "b": b}
    assert combine_reports({"a": a})["clean"]
