"""bench-e2e's ``--set section.key=value``: settings swept without code changes reach every stage of the runs."""

from __future__ import annotations

import os
from typing import Any

import pytest

import bench.e2e.__main__ as e2e
from mdpipe.config import ConfigError, load_config


def test_assignments_become_the_variables_every_stage_reads() -> None:
    env = e2e.settings_env(["sink.batch_ms=20", " dedup.fetch_wait_ms = 10", "gather.read_window_ms=5.5"], environ={})
    assert env == {
        "MDPIPE_SINK__BATCH_MS": "20",
        "MDPIPE_DEDUP__FETCH_WAIT_MS": "10",
        "MDPIPE_GATHER__READ_WINDOW_MS": "5.5",
    }
    config = load_config(environ=env, use_infra_state=False)  # what a stage started with that environment sees
    assert (config.sink.batch_ms, config.dedup.fetch_wait_ms, config.gather.read_window_ms) == (20, 10, 5.5)


@pytest.mark.parametrize(
    "assignment",
    [
        "sink.batch_ms",  # no value
        "batch_ms=20",  # no section
        "sink.=20",
        "sink.batch.ms=20",
        "nosuch.batch_ms=20",  # unknown section
        "sink.no_such_key=1",  # unknown key
        "sink.batch_ms=soon",  # wrong type
        "sink.batch_ms=0",  # out of range
    ],
)
def test_a_setting_the_configuration_refuses_stops_before_any_run(assignment: str) -> None:
    with pytest.raises(ConfigError):
        e2e.settings_env([assignment], environ={})


def test_main_passes_the_overrides_to_the_runs_and_skips_an_empty_ramp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))  # main() updates the process environment
    seen: list[tuple[str, str, str | None]] = []
    monkeypatch.setattr(e2e, "one_run", _fake_run(seen))
    assert e2e.main(["--runs", "2", "--ramp", "", "--set", "sink.batch_ms=20", "--name", "timers-x"]) == 0
    # the unmeasured warm-up first (default 60 s, not verified), then the latency runs; no ramp run
    assert seen == [("warmup", "timers-x", "20"), ("lat0", "timers-x", "20"), ("lat1", "timers-x", "20")]


def test_the_warm_up_runs_unmeasured_at_the_rate_for_its_seconds_and_0_skips_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[tuple[float, float, bool, str]] = []

    def fake_run(rate: float, duration: float, markets: int, gatherers: int, verify: bool, tag: str, venue: str = "",
                 name: str = "bench-e2e") -> dict[str, Any]:  # fmt: skip
        runs.append((rate, duration, verify, tag))
        return _result()

    monkeypatch.setattr(e2e, "one_run", fake_run)
    assert e2e.main(["--runs", "1", "--ramp", "", "--rate", "5000", "--duration", "20", "--warmup-s", "45"]) == 0
    assert runs == [(5000.0, 45.0, False, "warmup"), (5000.0, 20.0, True, "lat0")]
    assert '"warmup_s": 45.0' in capsys.readouterr().out.splitlines()[-1]
    runs.clear()
    assert e2e.main(["--runs", "1", "--ramp", "", "--warmup-s", "0"]) == 0
    assert [tag for *_, tag in runs] == ["lat0"]


def _result() -> dict[str, Any]:
    return {
        "latency_ms": {"p50": 1.0, "p99": 2.0},
        "receive_latency_ms": {"p99": 1.0},
        "hops_ms": {},
        "cpu": {},
        **{k: 0 for k in e2e.VERDICT_KEYS},
    }


def _fake_run(seen: list[tuple[str, str, str | None]]) -> Any:
    def fake_run(rate: float, duration: float, markets: int, gatherers: int, verify: bool, tag: str, venue: str = "",
                 name: str = "bench-e2e") -> dict[str, Any]:  # fmt: skip
        seen.append((tag, name, os.environ.get("MDPIPE_SINK__BATCH_MS")))
        return _result()

    return fake_run


def test_result_names_the_partition_count_the_runs_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker's CPU per event grows with the partition count, so a RESULT says which one it was taken at."""
    import json

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "MDPIPE_KAFKA__PARTITIONS"})
    monkeypatch.setattr(e2e, "one_run", _fake_run([]))
    assert e2e.main(["--runs", "1", "--ramp", "", "--warmup-s", "0", "--set", "kafka.partitions=2"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1].removeprefix("RESULT "))
    assert (result["partitions"], result["settings"]) == (2, ["kafka.partitions=2"])
