"""``ops.accelerators``: the image build's check that every optional C extension was compiled. It lists the sink's
row builder and every venue's accelerators, and fails naming the ones missing; setup.py builds one extension per
``_*.c`` source, each of which some check covers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import venues
from ops import accelerators

ROOT = Path(__file__).resolve().parents[2]


def _sources() -> set[str]:
    found = [*ROOT.glob("*/_*.c"), *ROOT.glob("venues/*/_*.c")]
    return {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in found}


def test_every_c_source_is_an_accelerator_the_check_covers() -> None:
    assert _sources() == set(accelerators.accelerators())


def test_the_check_passes_on_this_install_from_the_root_directory() -> None:
    if not all(accelerators.accelerators().values()):
        pytest.skip("this checkout's install has no compiled extensions (no C compiler)")
    done = subprocess.run(
        [sys.executable, "-m", "ops.accelerators"], cwd="/", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[1] for line in done.stdout.splitlines()) == sorted(
        f"module={m}" for m in accelerators.accelerators()
    )


def test_a_missing_accelerator_fails_the_check_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    venue = venues.get_venue(venues.names()[0])
    monkeypatch.setattr(type(venue), "accelerators", lambda self: {f"venues.{self.name}._fast": False})
    assert accelerators.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"venues.{venue.name}._fast" in err[0], err
