"""No file outside a venue's folder names a venue (issue 16: adding a venue is a folder, not a rewrite).

A venue's name (any of :func:`venues.names`, case-insensitive, anywhere in a file's text) may appear only in
``venues/<name>/``, ``tests/venues/<name>/``, ``docs/`` and ``README.md``. Every other file is a stage, shared code,
a test of those, or deployment, and reaches a venue through :func:`venues.get_venue` by the name it is given.

Files that still name a venue are listed in :data:`STILL_NAMING` with the reason; the test also fails when a listed
file no longer names a venue (or is gone), so the list only shrinks: delete the line when you clear a file. Files
that may name a venue for good are in :data:`NAMING_FOR_GOOD`, each with the reason it cannot change.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import venues

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules"}  # without git; and every directory named ".*"
EXEMPT_TREES = ("docs/",)
EXEMPT_FILES = {"README.md"}
# Files that name a venue and never will change: path -> why (each must still exist and still name a venue).
NAMING_FOR_GOOD: dict[str, str] = {
    "sink/migrations/0006_books.sql": (
        "an applied migration is never edited (databases record it as applied); its comment on top_of_book_at names "
        "the first venue's book shape, and a later migration that replaces the function may say it neutrally"
    ),
}

STILL_NAMING: dict[str, str] = {}  # every file outside a venue folder is venue-neutral; keep it so


def _files() -> list[Path]:
    """The repository's files: tracked and not ignored (``git ls-files``), else a walk of the tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listed = None
    if listed is not None:
        return [p for p in (ROOT / name for name in listed.decode().split("\0") if name) if p.is_file()]
    out: list[Path] = []
    stack = [ROOT]
    while stack:
        here = stack.pop()
        for entry in here.iterdir():
            if entry.is_dir():
                if (
                    not entry.name.startswith(".")
                    and entry.name not in SKIP_DIRS
                    and not entry.name.endswith(".egg-info")
                ):
                    stack.append(entry)
            elif entry.is_file() and not entry.name.startswith("."):
                out.append(entry)
    return out


def _home(rel: str) -> str | None:
    """The venue whose folder ``rel`` lies in (None: no venue's)."""
    for prefix in ("venues/", "tests/venues/"):
        if rel.startswith(prefix):
            head = rel[len(prefix) :].split("/", 1)
            return head[0] if len(head) == 2 else None
    return None


def naming_files() -> dict[str, list[str]]:
    """Every file outside the exempt places whose text names a venue other than its folder's: path -> names."""
    pattern = re.compile("|".join(re.escape(n) for n in venues.names()), re.IGNORECASE)
    found: dict[str, list[str]] = {}
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in EXEMPT_FILES or rel in NAMING_FOR_GOOD or rel.startswith(EXEMPT_TREES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (images, compiled extensions)
        home = _home(rel)
        named = sorted({m.group(0).lower() for m in pattern.finditer(text)} - {home})
        if named:
            found[rel] = named
    return found


def test_the_list_of_venues_is_the_folders() -> None:
    assert venues.names(), "no venue package under venues/"
    for name in venues.names():
        assert (ROOT / "venues" / name / "__init__.py").is_file()


def test_no_file_outside_a_venue_folder_names_a_venue() -> None:
    unexpected = {f: n for f, n in naming_files().items() if f not in STILL_NAMING}
    assert not unexpected, (
        "these files name a venue outside its folder (reach it through venues.get_venue instead): "
        + ", ".join(f"{f} ({'/'.join(n)})" for f, n in sorted(unexpected.items()))
    )


def test_the_list_of_files_still_naming_a_venue_only_shrinks() -> None:
    naming = naming_files()
    cleared = sorted(f for f in STILL_NAMING if f not in naming)
    assert not cleared, f"no longer name a venue (or are gone): delete them from STILL_NAMING: {', '.join(cleared)}"


def test_the_files_naming_a_venue_for_good_still_do() -> None:
    """An exemption for good stays exact: its file exists and still names a venue (else delete the entry)."""
    pattern = re.compile("|".join(re.escape(n) for n in venues.names()), re.IGNORECASE)
    for rel, reason in NAMING_FOR_GOOD.items():
        assert reason
        path = ROOT / rel
        assert path.is_file() and pattern.search(path.read_text(encoding="utf-8")), rel


def test_the_readme_lists_what_is_not_yet_behind_the_interface() -> None:
    """The README's "Not yet behind the interface" sentence names the trees STILL_NAMING still lists, and no other."""
    text = (ROOT / "README.md").read_text()
    if not STILL_NAMING:
        assert "Not yet behind the interface" not in text, "STILL_NAMING is empty: the README must not list leftovers"
        assert "Every file outside a venue's folder is venue-neutral" in text
        return
    start = text.index("Not yet behind the interface")
    sentence = text[start : text.index("\n\n", start)]
    trees = {path.split("/")[0] + "/" for path in STILL_NAMING if not path.startswith("tests/")}
    assert all(f"`{tree}" in sentence for tree in trees), (trees, sentence)
    stages_tests_naming = [p for p in STILL_NAMING if p.startswith("tests/") and not p.startswith("tests/venue_sim/")]
    if not stages_tests_naming:  # the stages' test data no longer names a venue: the README must not say it does
        assert "test data of the stages" not in sentence, sentence
