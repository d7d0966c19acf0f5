"""Compose env files as compose reads them, for the tests of infra/compose.yaml and of each venue's deployment files
(venues/<name>/deploy/): one reader instead of one per test module."""

from __future__ import annotations

from pathlib import Path

from venues import default_name

ROOT = Path(__file__).resolve().parents[2]


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a compose env file (``NAME=value`` lines; comments and blank lines skipped)."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#"))


def venue_file(name: str = "compose.env", venue: str | None = None) -> Path:
    """A deployment file of ``venue`` (default: the default venue)."""
    return ROOT / "venues" / (venue or default_name()) / "deploy" / name


def venue_env(*files: str, venue: str | None = None) -> dict[str, str]:
    """What `make product` gives compose: the variables of the venue's compose.env then ``files``, later winning."""
    out: dict[str, str] = {}
    for name in ("compose.env", *files):
        out.update(read_env_file(venue_file(name, venue)))
    return out
