"""Two pipeline runs started in the same second on one broker get their own topics, dedup app and sink group.

The run's names used to be the start second alone, so parallel test workers (or two demos) that started together
shared topics and consumer groups: one run's sink was fenced by the other's static member, and each verified the
other's events. No broker needed: the names are decided when the run is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdpipe.config import Config
from ops import pipeline_run
from ops.pipeline_run import PipelineRun, RunOptions


def test_runs_built_in_the_same_second_have_distinct_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_run.time, "strftime", lambda fmt, *args: "20261205062425")  # one second for both
    a, b = (PipelineRun(Config(), RunOptions(workdir=tmp_path / "run")) for _ in range(2))
    assert a.topic_prefix != b.topic_prefix
    assert a.app_id != b.app_id
    assert a.group_id != b.group_id
