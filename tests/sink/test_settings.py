"""The sink takes its own config section: `mdpipe sink`'s flags are folded into ``sink`` through its validation,
before the sink touches the broker or the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdpipe.cli import main

UNREACHABLE = '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n[postgres]\ndsn = "postgresql://nobody@127.0.0.1:1/none"\n'


@pytest.mark.parametrize(
    ("flags", "setting"), [(["--batch-rows", "0"], "batch_rows"), (["--batch-ms", "-5"], "batch_ms")]
)
def test_a_flag_outside_the_settings_range_is_refused_like_the_setting(
    flags: list[str], setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags used to fill an options class that checked nothing: a batch of 0 rows reached the loader."""
    config = tmp_path / "mdpipe.toml"
    config.write_text(UNREACHABLE)
    assert main(["--config", str(config), "sink", *flags]) == 2
    out = capsys.readouterr()
    assert setting in out.out and "must be > 0" in out.out, out
