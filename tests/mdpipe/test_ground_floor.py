"""mdpipe/ is the ground floor: config, logging, metrics, failures, Kafka helpers, topics and the CLI entry.

Every stage (ingest, dedup_stream, sink, venue_sim), the cross-stage commands (ops) and the tools around them
(infra, bench, ...) stand on it, so no module of mdpipe/ may import any of them: not at module level, not inside a
function. The CLI reaches the subcommands through ``mdpipe.cli.COMMANDS`` (module paths, loaded by name on use).
The checks read the source (AST), so an import in a branch that no test runs is caught as well.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUND = ROOT / "mdpipe"


def project_packages(root: Path) -> set[str]:
    """The checkout's top-level packages: every folder at the root holding an ``__init__.py``."""
    return {p.parent.name for p in root.glob("*/__init__.py")}


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``: ``import a.b``, ``from a.b import c`` (at any
    depth, in functions and branches too) and ``importlib.import_module("a.b")`` / ``__import__("a.b")`` with a
    literal name. Relative imports stay inside their own package and are not listed."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value))
    return found


def upward_imports(package_dir: Path, forbidden: set[str]) -> list[str]:
    """``file:line: module`` for every import in ``package_dir`` of a package named in ``forbidden``."""
    offences = []
    for path in sorted(package_dir.rglob("*.py")):
        for line, module in imported_modules(path.read_text(), str(path)):
            if module.split(".")[0] in forbidden:
                offences.append(f"{path.relative_to(package_dir.parent)}:{line}: {module}")
    return offences


# The ground floor may look a venue up: the config checks ``venue.name`` against the venue wing's registry, which
# loads each venue's package (its interface only: the venue imports its modules when a stage calls it) and the shared
# schemas those interfaces speak. No stage, cross-stage command or tool package is loaded by that.
BESIDE_THE_GROUND = {"mdpipe", "venues", "schemas"}


def test_the_stages_are_among_the_packages_checked() -> None:
    packages = project_packages(ROOT)
    assert {"ingest", "dedup_stream", "sink", "venue_sim", "ops", "mdpipe"} <= packages, packages


def test_mdpipe_imports_no_other_package_of_the_project() -> None:
    forbidden = project_packages(ROOT) - BESIDE_THE_GROUND
    offences = upward_imports(GROUND, forbidden)
    assert not offences, (
        "mdpipe/ is the ground floor and imports no stage, no cross-stage command (ops/) and no tool package; "
        "move the code that needs them up, or let the stage pass the value down:\n" + "\n".join(offences)
    )


def test_importing_every_mdpipe_module_loads_no_other_package_of_the_project() -> None:
    """The same rule at run time, in a fresh interpreter: importing mdpipe.cli (which names the subcommands) and
    every other module of mdpipe/ loads nothing of the stages."""
    modules = sorted(f"mdpipe.{p.stem}" for p in GROUND.glob("*.py") if p.stem != "__main__")
    forbidden = sorted(project_packages(ROOT) - BESIDE_THE_GROUND)
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(sorted({{m for m in sys.modules if m.split(".")[0] in {forbidden!r}}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [(["config", "show"], []), (["--log-format", "json", "topics", "--help"], []), (["gather", "--help"], ["ingest"])],
)
def test_the_cli_imports_only_the_command_in_use(argv: list[str], loaded: list[str]) -> None:
    """``mdpipe.cli.COMMANDS`` names modules; `mdpipe config show` imports no stage, `mdpipe gather` the gatherer's
    package alone."""
    forbidden = sorted(project_packages(ROOT) - BESIDE_THE_GROUND)
    script = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from mdpipe.cli import main
        with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
            main({argv!r})
        print(sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in {forbidden!r}}}))
        """
    )
    env = {**os.environ, "MDPIPE_CONFIG": os.devnull}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(loaded), out.stdout


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sink", ["sink"]),
        ("import sink.rowcodec as codec", ["sink.rowcodec"]),
        ("from sink.rowcodec import resolve", ["sink.rowcodec"]),
        ("def f():\n    if x:\n        from venue_sim.keys import k\n", ["venue_sim.keys"]),
        ("import importlib\nimportlib.import_module('ops.demo_cli')", ["importlib", "ops.demo_cli"]),
        ("__import__('dedup_stream.startup')", ["dedup_stream.startup"]),
        ("from . import config\nfrom .logging import get_logger", []),
        ("COMMANDS = {'gather': 'ingest.cli'}", []),
    ],
)
def test_the_import_reader_sees_every_form(source: str, expected: list[str]) -> None:
    assert [module for _, module in imported_modules(source)] == expected


def test_an_upward_import_is_reported_with_file_and_line(tmp_path: Path) -> None:
    ground = tmp_path / "mdpipe"
    ground.mkdir()
    (ground / "config.py").write_text("import json\n\n\ndef check():\n    from sink.rowcodec import resolve\n")
    assert upward_imports(ground, {"sink"}) == ["mdpipe/config.py:5: sink.rowcodec"]
