"""The README's "Adding a venue" checklist names files that venues really have: every ``venues/<name>/...`` path it
lists exists in at least one venue's folder, so the checklist cannot drift from the layout it describes."""

from __future__ import annotations

import re
from pathlib import Path

import venues

ROOT = Path(__file__).resolve().parents[2]


def checklist_paths() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Adding a venue")
    section = text[start : text.index("\n## ", start + 1)]
    return sorted(set(re.findall(r"`((?:tests/)?venues/<name>/[^`]*)`", section)))


def test_the_checklist_names_venue_files() -> None:
    assert len(checklist_paths()) >= 8, checklist_paths()


def test_every_path_in_the_checklist_exists_for_some_venue() -> None:
    missing = []
    for pattern in checklist_paths():
        if not any((ROOT / pattern.replace("<name>", name)).exists() for name in venues.names()):
            missing.append(pattern)
    assert not missing, f"README's 'Adding a venue' names paths no venue has: {missing}"
