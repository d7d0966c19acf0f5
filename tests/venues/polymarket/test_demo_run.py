"""`mdpipe demo --venue polymarket` end to end, short: the Polymarket emulator with the demo's behaviours and faults ->
3 Polymarket gatherers -> dedup -> sink -> database, then `mdpipe verify` against the emulator's own truth and record
translated into Polymarket's tokens and messages (:mod:`venues.polymarket.verify`): nothing missing, duplicated or
unexpected, every stored book snapshot one the venue sent, and the books rebuilt from the rows with the venue's
replace rule equal to the venue's at its checkpoints, for both tokens of every market.

One run checks much: it is the demo's code path (``ops.demo_cli.run``: --venue, the DEMO JSON) with a short duration.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from mdpipe.config import Config
from ops import demo_cli
from ops.pipeline_run import PipelineRun, RunOptions

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


def _demo_args(**overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo_cli.add_parser(parser.add_subparsers())
    ns = parser.parse_args(["demo", "--venue", "polymarket"])
    for key, value in overrides.items():
        setattr(ns, key, value)
    return ns


def test_demo_of_polymarket_with_faults_verifies_clean(
    mdpipe_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[PipelineRun] = []
    database = f"mdpipe_pmdemo_{uuid.uuid4().hex[:12]}"  # never the demo's: a demo may run beside the tests

    class ShortRun(PipelineRun):
        def __init__(self, config: Config, options: RunOptions) -> None:
            options = RunOptions(
                **{
                    **{f: getattr(options, f) for f in RunOptions.__dataclass_fields__},
                    "workdir": tmp_path / "run",
                    "database": database,
                    "drain_timeout_s": 60.0,
                }
            )
            super().__init__(config, options)
            runs.append(self)

    monkeypatch.setattr("ops.pipeline_run.PipelineRun", ShortRun)
    code = demo_cli.run(_demo_args(markets=60, rate=250.0, duration=20.0, seed=5), mdpipe_config)
    out = capsys.readouterr().out
    demo = json.loads(out.rsplit("DEMO ", 1)[1])
    run = runs[0]
    assert run.venue_names == ("polymarket",)
    assert demo["venue"] == "polymarket"
    assert code == 0, out[-4000:]
    for figure in ("missing", "duplicated", "unexpected", "markets_uncovered", "markets_without_rows"):
        assert demo[figure] == 0, (figure, out[-4000:])
    assert demo["books_mismatched"] == 0 and demo["snapshots_unmatched"] == 0
    assert demo["expected"] > 2_000  # price_change entries and trades, per token, delivered to a gatherer
    # every token with a change delivered had its book rebuilt from the rows and compared at its last checkpoint
    assert demo["books_checked"] == demo["markets_traded"] > 20
    assert demo["bad_input"] >= 1  # the bad-number fault: dead-lettered, never stored
    assert demo["held_by_3"] > 0
    log = "\n".join(run.events_log)
    assert "SIGKILL" in log and "closed connection 1" in log
    assert "fault redeliver skipped" in log  # no client of this venue can tell a re-sent message from a new one
