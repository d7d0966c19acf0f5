"""The Dockerfile, checked structurally (no Docker engine on these machines): a multi-stage build whose runtime stage
is the default target, holds no compiler, runs as a non-root user with its state in a volume folder, and proves
that the C row builder was compiled and imports; its package list matches pyproject.toml; the build context
leaves host state out. The check commands it runs are run here too, against this checkout's install."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK_IMPORT = "import sink._rowcodec"
ACCELERATORS_CHECK = "python -m ops.accelerators"


def _python_snippets(run: str) -> list[str]:
    """The `python -c "..."` programs of a RUN instruction."""
    words = shlex.split(run.replace("&&", " && "))
    return [words[i + 2] for i, w in enumerate(words[:-2]) if w.endswith("python") and words[i + 1] == "-c"]


def _root(user: str) -> bool:
    name = user.split(":")[0]
    return name in ("", "0", "root")


def test_stages_build_test_runtime_with_runtime_the_default_target(dockerfile: Any) -> None:
    assert list(dockerfile.stages) == ["build", "test", "runtime"]  # the last stage is what `docker build .` makes
    base = dockerfile.global_args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.(1[1-9])-slim-\w+", base), base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and int(base.split(".")[1].split("-")[0]) >= 11
    for stage in dockerfile.stages.values():
        assert stage.base == "${PYTHON_IMAGE}", stage.name  # one pinned interpreter for every stage


def test_build_stage_compiles_the_row_builder_in_a_regular_install(dockerfile: Any) -> None:
    build = dockerfile.stages["build"]
    runs = build.args("RUN")
    assert any("gcc" in r and "apt-get install" in r for r in runs)
    install = next(r for r in runs if "pip install --no-deps ." in r)
    assert " -e " not in install  # a regular install: the extension is compiled into site-packages
    # setup.py marks the extension optional: the same RUN must fail when it was not built. From / so that the
    # source tree (without the .so) does not shadow the installed package.
    assert "cd / &&" in install
    (check,) = _python_snippets(install)
    assert CHECK_IMPORT in check and "assert ACCELERATED" in check and "resolve('c')" in check
    assert ACCELERATORS_CHECK in install  # and every venue's accelerator (venues/<name>/_*.c)
    deps = next(r for r in runs if "runtime-deps.txt" in r and "pip install" in r)
    assert "-c requirements.lock" in deps  # the locked versions


def test_build_stage_copies_every_package_pyproject_installs(dockerfile: Any) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns if (ROOT / p.rstrip("*") / "__init__.py").is_file()}
    copied = {a.split()[0] for a in dockerfile.stages["build"].args("COPY")}
    assert packages <= copied, f"not copied into the build stage: {sorted(packages - copied)}"
    assert project["project"]["readme"] in copied  # the package metadata reads it
    for source in copied:
        assert (ROOT / source).exists(), source


def test_runtime_stage_is_non_root_without_compilers_and_checks_the_extension(dockerfile: Any) -> None:
    runtime = dockerfile.stages["runtime"]
    assert not _root(runtime.user()), runtime.user()
    assert runtime.user().split(":")[0].isdigit()  # numeric: Kubernetes runAsNonRoot can verify it
    assert not any("apt-get" in r or "gcc" in r for r in runtime.args("RUN"))
    assert "--from=build /opt/mdpipe /opt/mdpipe" in runtime.args("COPY")
    # the extension check runs in the final image, as its user (after USER)
    after_user = runtime.instructions[[k for k, _ in runtime.instructions].index("USER") :]
    checks = [s for k, a in after_user if k == "RUN" for s in _python_snippets(a)]
    assert any(CHECK_IMPORT in s and "assert ACCELERATED" in s for s in checks)
    assert any(k == "RUN" and ACCELERATORS_CHECK in a for k, a in after_user)
    env = runtime.env()
    assert env["MDPIPE_RUN_DIR"] == "/var/lib/mdpipe"
    assert env["PATH"].startswith("/opt/mdpipe/bin:")
    assert runtime.exec_form("ENTRYPOINT") == ["mdpipe"]
    created = next(r for r in runtime.args("RUN") if "useradd" in r)
    uid = runtime.user().split(":")[0]
    assert (
        f"--uid {uid}" in created and "install -d -o mdpipe -g mdpipe" in created and env["MDPIPE_RUN_DIR"] in created
    )


def test_test_stage_runs_the_suite_as_a_non_root_user(dockerfile: Any) -> None:
    test = dockerfile.stages["test"]
    assert not _root(test.user())
    assert any("pip install --no-deps -e ." in r for r in test.args("RUN"))
    assert any("make" in r and "apt-get install" in r for r in test.args("RUN"))  # the Makefile tests run make
    assert test.env()["MDPIPE_TEST_INFRA"] == "external"
    assert test.exec_form("CMD") == ["pytest"]


def test_test_stage_has_node_and_the_pglite_package_so_the_timescaledb_tier_runs(dockerfile: Any) -> None:
    """tests/tsdb skips without Node (infra/pglite_timescale.py): the test stage copies Node 20+ from the official
    image of its Python image's Debian release, and installs infra/pglite from its lock (npm ci) before the tree."""
    test = dockerfile.stages["test"]
    release = dockerfile.global_args["PYTHON_IMAGE"].rsplit("-", 1)[1]  # python:3.11-slim-bookworm: bookworm
    copies = [c for c in test.args("COPY") if c.startswith("--from=")]
    sources = {c.split()[0].removeprefix("--from="): c.split()[1:] for c in copies}
    node_images = [img for img in sources if img.startswith("node:")]
    assert len(node_images) == 1, copies
    match = re.fullmatch(r"node:(\d+)-(\w+)-slim", node_images[0])
    assert match and int(match.group(1)) >= 20 and match.group(2) == release, node_images
    assert any(c.split()[1:] == ["/usr/local/bin/node", "/usr/local/bin/node"] for c in copies)
    runs = test.args("RUN")
    assert any("npm --version" in r and "/usr/local/bin/npm" in r for r in runs)
    installs = [i for i, (k, a) in enumerate(test.instructions) if k == "RUN" and "npm ci" in a]
    assert len(installs) == 1 and "cd infra/pglite" in test.instructions[installs[0]][1]
    assert ".mdpipe-installed" in test.instructions[installs[0]][1]  # the Makefile's stamp: `make test` skips it
    lock_copy = next(
        i for i, (k, a) in enumerate(test.instructions) if k == "COPY" and "infra/pglite/package-lock.json" in a
    )
    tree_copy = next(i for i, (k, a) in enumerate(test.instructions) if k == "COPY" and a.split()[-2:] == [".", "./"])
    assert lock_copy < installs[0] < tree_copy  # the install layer is reused until the lock changes
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert "**/node_modules" in ignored  # a host's node_modules never lands over the image's


def test_exposed_ports_are_the_compose_stage_ports(dockerfile: Any) -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())["services"]
    published = {int(p.rsplit(":", 1)[1]) for s in compose.values() if "build" in s for p in s.get("ports", [])}
    exposed = {int(p) for a in dockerfile.stages["runtime"].args("EXPOSE") for p in a.split()}
    assert published == exposed


def test_dockerignore_keeps_host_state_and_objects_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".run", ".cache", "**/*.so", "**/__pycache__"} <= ignored


@pytest.mark.parametrize("stage", ["build", "runtime"])
def test_the_extension_checks_pass_on_this_install(dockerfile: Any, stage: str) -> None:
    """The check programs are real Python that passes where the extension is built (this checkout's .venv),
    run from / like the image does."""
    from sink.rowcodec import ACCELERATED

    if not ACCELERATED:
        pytest.skip("this checkout's install has no compiled sink._rowcodec (no C compiler)")
    snippets = [s for r in dockerfile.stages[stage].args("RUN") for s in _python_snippets(r) if CHECK_IMPORT in s]
    assert snippets
    for snippet in snippets:
        done = subprocess.run([sys.executable, "-c", snippet], cwd="/", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
