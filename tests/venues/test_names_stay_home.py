"""No file outside a venue's folder names a venue (issue 16: adding a venue is a folder, not a rewrite).

A venue's name (any of :func:`venues.names`, case-insensitive, anywhere in a file's text) may appear only in
``venues/<name>/``, ``tests/venues/<name>/``, ``docs/`` and ``README.md``. Every other file is a stage, shared code,
a test of those, or deployment, and reaches a venue through :func:`venues.get_venue` by the name it is given.

Files that still name a venue are listed in :data:`STILL_NAMING` with the reason; the test also fails when a listed
file no longer names a venue (or is gone), so the list only shrinks: delete the line when you clear a file.
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

_DEPLOY = "deployment of the first venue: its secrets, URLs and env names (a venue section per deployment is next)"
_FIXTURE = "test data: frames or bodies of the first venue fed through the stage"
_VENUE_TEST = "tests the venue's own behaviour through a stage; moves to tests/venues/<name>/ with a venue-neutral part"

STILL_NAMING: dict[str, str] = {
    # deployment
    "Makefile": _DEPLOY,
    "infra/compose.yaml": _DEPLOY,
    "infra/secrets/README.md": _DEPLOY,
    "infra/sim.env": _DEPLOY,
    "mdpipe.example.toml": _DEPLOY,
    # discovery: the venue's market statuses, lifecycle vocabulary and REST Market object (ingest.registry, its REST
    # paging in ingest.rest) still live in the gatherer; they move behind the interface next
    "ingest/registry.py": "discovery is still the first venue's (statuses, lifecycle types, REST Market object)",
    # the sink's migrations are applied as written (a comment names the venue's book shape)
    "sink/migrations/0006_books.sql": "an applied migration is never edited",
    # test and benchmark data
    "dedup_stream/synth.py": "synthetic raw frames in the first venue's wire format (dedup tests and benches)",
    # tests of stages fed with the first venue's data
    "tests/dedup_stream/test_gaps.py": _FIXTURE,
    "tests/dedup_stream/test_logic.py": _FIXTURE,
    "tests/dedup_stream/test_metrics.py": _FIXTURE,
    "tests/dedup_stream/test_normalise.py": _FIXTURE,
    "tests/dedup_stream/test_worker.py": _FIXTURE,
    "tests/mdpipe/test_cli_failures.py": _FIXTURE,
    "tests/ops/test_hops.py": _FIXTURE,
    "tests/ops/test_verify_db.py": _FIXTURE,
    "tests/schemas/test_codec.py": _FIXTURE,
    "tests/sink/test_batch.py": _FIXTURE,
    "tests/sink/test_helper.py": _FIXTURE,
    "tests/sink/test_load.py": _FIXTURE,
    "tests/sink/test_records.py": _FIXTURE,
    "tests/sink/test_rowcodec.py": _FIXTURE,
    "tests/infra/test_compose.py": _DEPLOY,
    "tests/mdpipe/test_example_config.py": _DEPLOY,
    "tests/ingest/test_connection.py": _VENUE_TEST,
    "tests/ingest/test_lifecycle_discovery.py": _VENUE_TEST,
    "tests/ingest/test_rest_citizen.py": _VENUE_TEST,
    "tests/ingest/test_shards_registry_auth.py": _VENUE_TEST,
    "tests/ingest/test_venue_behaviours.py": _VENUE_TEST,
    "tests/ingest/test_venue_behaviours_live.py": _VENUE_TEST,
    "tests/ingest/test_ws_clients.py": _VENUE_TEST,
}


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
        if rel in EXEMPT_FILES or rel.startswith(EXEMPT_TREES):
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
