"""One whole-pipeline run for an end-to-end test: the emulator, gatherers, dedup and sink of
:class:`ops.pipeline_run.PipelineRun` started, run for the options' duration, drained and stopped (stopped also when
the run fails), in the test's own work directory and a database of its own (never the demo's: a demo may run beside
the tests)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from mdpipe.config import Config
from ops.pipeline_run import PipelineRun, RunOptions

__all__ = ["finished_run"]


def finished_run(config: Config, tmp_path: Path, database_prefix: str, **options: Any) -> PipelineRun:
    """The run of ``RunOptions(**options)``, finished; verify it with ``run.verify()``."""
    run = PipelineRun(
        config,
        RunOptions(
            workdir=tmp_path / "run",
            database=f"{database_prefix}_{uuid.uuid4().hex[:12]}",
            **options,
        ),
    )
    try:
        run.start()
        run.run()
    finally:
        run.stop()
    return run
