"""The Makefile's choice of stack and the commands each path would run, checked with `make -n` and a fake `docker`
on a PATH without java, mvn or apt-get (a Mac with Docker only, as far as make can tell). No Docker engine runs on
these machines: nothing here starts a container; the compose commands are checked against infra/compose.yaml."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.manager import COMPOSE_BOOTSTRAP, COMPOSE_DSN

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
COMPOSE = "docker compose -f infra/compose.yaml"
NATIVE_TOOLS = ("mdpipe infra install", "pip install", "-m venv", "apt-get", "mvn", "java")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _fake_bin(tmp_path: Path, *, docker: bool | None = True, tools: tuple[str, ...] = (), uname: str = "") -> Path:
    """A PATH folder: sh and uname (real, or printing ``uname``), a `docker` whose `info` succeeds (True), fails
    (False) or no docker at all (None), and fake ``tools`` (java, mvn, apt-get...) that do nothing."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    (folder / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    if uname:
        _script(folder / "uname", f"echo {uname}")
    else:
        (folder / "uname").symlink_to(shutil.which("uname") or "/bin/uname")
    if docker is not None:
        _script(folder / "docker", f'[ "$1" = info ] && exit {0 if docker else 1}\necho "docker $*"')
    for tool in tools:
        _script(folder / tool, "exit 0")
    return folder


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _env(folder: Path, **extra: str) -> dict[str, str]:
    return {"PATH": str(folder), "HOME": str(folder.parent), **extra}


def _make_n(folder: Path, *args: str, **env: str) -> list[str]:
    done = subprocess.run(
        [str(MAKE), "-n", "--no-print-directory", "-C", str(ROOT), *args],
        env=_env(folder, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _stack(folder: Path, **env: str) -> str:
    done = subprocess.run(
        ["sh", str(ROOT / "infra" / "stack.sh")], env=_env(folder, **env), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- which stack --------------------------------------------------------------------------------------------------
def test_docker_only_host_gets_the_compose_stack(tmp_path: Path) -> None:
    assert _stack(_fake_bin(tmp_path)) == "compose"


def test_no_docker_engine_means_native(tmp_path: Path) -> None:
    assert _stack(_fake_bin(tmp_path, docker=False)) == "native"
    assert _stack(_fake_bin(tmp_path / "none", docker=None)) == "native"


def test_a_linux_host_that_can_install_the_native_tools_stays_native(tmp_path: Path) -> None:
    assert _stack(_fake_bin(tmp_path, tools=("apt-get",))) == "native"
    pg = tmp_path / "pg"
    pg.mkdir()
    _script(pg / "postgres", "exit 0")
    both = _fake_bin(tmp_path / "jm", tools=("java", "mvn"))
    assert _stack(both, MDPIPE_PG_BIN=str(pg)) == "native"
    assert _stack(both, MDPIPE_PG_BIN=str(tmp_path / "nowhere")) == "compose"  # no PostgreSQL server, no apt
    assert _stack(_fake_bin(tmp_path / "j", tools=("java",)), MDPIPE_PG_BIN=str(pg)) == "compose"  # no Maven


def test_a_mac_with_java_and_maven_still_uses_compose(tmp_path: Path) -> None:
    """The native launchers are Linux-only (libc prctl, Debian's PostgreSQL layout)."""
    folder = _fake_bin(tmp_path, tools=("java", "mvn", "apt-get"), uname="Darwin")
    assert _stack(folder) == "compose"


# --- what make would run on a Docker-only host ----------------------------------------------------------------------
@pytest.fixture
def docker_only(tmp_path: Path) -> Path:
    return _fake_bin(tmp_path)


def _assert_no_native_tools(lines: list[str]) -> None:
    text = "\n".join(lines)
    for tool in NATIVE_TOOLS:
        assert tool not in text, f"{tool!r} would run on a Docker-only host:\n{text}"
    assert ".venv/bin" not in text


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line, as argv lists; a `trap` handler's commands included."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "&&", "||", "|", "&", "{", "}", "(", ")"):
            commands.append([])
        else:
            commands[-1].append(token)
    out = []
    for words in commands:
        if words[:1] == ["trap"] and len(words) > 1:
            out += _commands(words[1])
        elif words:
            out.append(words)
    return out


def _compose_calls(lines: list[str]) -> list[list[str]]:
    """The `docker compose ...` invocations in the printed commands (continuation lines joined)."""
    script = "\n".join(lines).replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        for words in _commands(line):
            words = [w for w in words if w not in ("if", "then", "else", "fi")]
            start = next((i for i in range(len(words) - 1) if words[i : i + 2] == ["docker", "compose"]), None)
            if start is not None:
                calls.append(words[start:])
    return calls


def _compose_words(venue: str | None = None) -> list[str]:
    """What every compose call of the Makefile starts with: the file, the venue's deployment file, infra/.env if any
    (infra/compose.yaml refuses any command without MDPIPE_VENUE)."""
    from venues import default_name

    own = ["--env-file", "infra/.env"] if (ROOT / "infra" / ".env").is_file() else []
    return [*COMPOSE.split(), "--env-file", f"venues/{venue or default_name()}/deploy/compose.env", *own]


def test_make_up_on_a_docker_only_host(docker_only: Path) -> None:
    lines = _make_n(docker_only, "up")
    _assert_no_native_tools(lines)
    assert _compose_calls(lines) == [[*_compose_words(), "up", "-d", "--wait"]]
    # the addresses land in .run/infra.json as `mdpipe infra up --docker` writes them (host tools read them)
    script = "\n".join(lines).replace("\\\n", " ")
    (printf,) = [c for line in script.splitlines() for c in _commands(line) if c[0] == "printf"]
    fmt, *values, redirect, target = printf[1:]
    assert (redirect, target) == (">", ".run/infra.json")
    assert json.loads(fmt.replace("\\n", "") % tuple(values)) == {
        "mode": "docker",
        "bootstrap_servers": COMPOSE_BOOTSTRAP,
        "dsn": COMPOSE_DSN,
    }


def test_make_demo_on_a_docker_only_host(docker_only: Path) -> None:
    lines = _make_n(docker_only, "demo", "DEMO_ARGS=--duration 30 --no-faults")
    _assert_no_native_tools(lines)
    run = [c for c in _compose_calls(lines) if "run" in c]
    assert run == [
        [*_compose_words(), "--profile", "demo", "run", "--rm", "--build", "demo", "--duration", "30", "--no-faults"]
    ]
    down = [*_compose_words(), "down"]
    assert any(call[: len(down)] == down for call in _compose_calls(lines))  # stops what it started


def test_make_test_on_a_docker_only_host(docker_only: Path) -> None:
    lines = _make_n(docker_only, "test", "PYTEST_ARGS=-k compose -x")
    _assert_no_native_tools(lines)
    run = [c for c in _compose_calls(lines) if "run" in c]
    assert run == [[*_compose_words(), "--profile", "test", "run", "--rm", "--build", "tests", "-k", "compose", "-x"]]


@pytest.mark.parametrize("target", ["setup", "down", "status"])
def test_other_stack_targets_stay_in_compose(docker_only: Path, target: str) -> None:
    lines = _make_n(docker_only, target)
    _assert_no_native_tools(lines)
    assert _compose_calls(lines), lines


def test_compose_commands_name_services_and_profiles_the_file_has(docker_only: Path) -> None:
    services = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())["services"]
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    lines = [
        line for target in ("setup", "up", "down", "status", "demo", "test") for line in _make_n(docker_only, target)
    ]
    for target in ("product", "product-sim", "product-down", "product-status"):
        lines += _make_n(docker_only, target)
    calls = _compose_calls(lines)
    assert calls
    for call in calls:
        assert call[2:4] == ["-f", "infra/compose.yaml"]
        used = [call[i + 1] for i, word in enumerate(call) if word == "--profile"]
        assert set(used) <= profiles, call
        assert call[: len(_compose_words())] == _compose_words(), call  # the venue's file, every time
        for i, word in enumerate(call):
            if word == "--env-file":
                assert (ROOT / call[i + 1]).is_file(), call
        for verb in ("run", "build"):
            if verb in call:
                named = [w for w in call[call.index(verb) + 1 :] if not w.startswith("-")]
                target = named[: (1 if verb == "run" else None)]
                assert set(target) <= set(services), call
                for name in target:  # a profile service runs only with its profile named
                    assert set(services[name].get("profiles", [])) <= set(used), call


def test_product_status_scrapes_every_stage_of_the_product_in_its_network(docker_only: Path) -> None:
    """`mdpipe status` in a one-off container of the product's network (no dependencies started), given every
    long-running stage's metrics endpoint: service name and the port its health check probes (test_compose checks
    that this is the port the process binds)."""
    services = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())["services"]
    expected = set()
    for name, service in services.items():
        command = service.get("command") or []
        if "product" in service.get("profiles", []) and command[:1] in (["gather"], ["dedup"], ["sink"]):
            if command[1:] == ["migrate"]:
                continue
            port = service["healthcheck"]["test"][-1].split(":")[-1].split("/")[0]
            expected.add(f"{name}:{port}")
    (call,) = _compose_calls(_make_n(docker_only, "product-status"))
    run = call.index("run")
    assert call[run : run + 5] == ["run", "--rm", "--no-deps", "topics", "status"]
    assert services["topics"].get("entrypoint") is None  # the image's entrypoint: `mdpipe`
    metrics = call[call.index("--metrics") + 1 :]
    assert set(metrics) == expected and len(metrics) == len(expected) == 5
    from mdpipe.cli import build_parser

    args = build_parser().parse_args(call[run + 4 :])  # what `mdpipe` receives in the container
    assert args.command == "status" and args.metrics == metrics


@pytest.mark.parametrize("target", ["down", "product-down"])
def test_down_names_every_profile(docker_only: Path, target: str) -> None:
    """`docker compose down` leaves the containers of profiles it is not given (compose v2)."""
    services = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())["services"]
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    (call,) = [c for c in _compose_calls(_make_n(docker_only, target)) if "down" in c]
    assert {call[i + 1] for i, word in enumerate(call) if word == "--profile"} == profiles


def test_stack_can_be_forced(docker_only: Path) -> None:
    lines = _make_n(docker_only, "up", "STACK=native")
    assert any("mdpipe infra install" in line for line in lines)


# --- the native path is what it was --------------------------------------------------------------------------------
def test_native_host_still_installs_and_starts_the_native_launchers(tmp_path: Path) -> None:
    folder = _fake_bin(tmp_path, docker=False, tools=("apt-get",))
    lines = _make_n(folder, "up")
    text = "\n".join(lines)
    assert ".venv/bin/mdpipe infra install" in text and ".venv/bin/mdpipe infra up" in text
    assert not _compose_calls(lines)
    demo = "\n".join(_make_n(folder, "demo"))
    assert ".venv/bin/mdpipe demo" in demo and ".venv/bin/mdpipe infra install" in demo
    test = "\n".join(_make_n(folder, "test"))
    assert ".venv/bin/pytest" in test and ".venv/bin/ruff check ." in test


def test_benchmarks_stay_on_the_native_stack(docker_only: Path) -> None:
    text = "\n".join(_make_n(docker_only, "bench-sink"))
    assert ".venv/bin/mdpipe infra install" in text and "-m bench.sink" in text


def test_the_stack_script_is_plain_posix_sh() -> None:
    checker = shutil.which("dash") or shutil.which("sh")
    assert checker is not None
    done = subprocess.run([checker, "-n", str(ROOT / "infra" / "stack.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(ROOT / "infra" / "stack.sh", os.X_OK)


def test_product_takes_the_venues_deployment_files_by_name(docker_only: Path) -> None:
    """`make product` / `product-sim` read the deployment files of the venue MDPIPE_VENUE names (default: the venue
    wing's default venue) from its folder; infra/compose.yaml names no venue."""
    from venues import default_name

    name = default_name()
    for target, last in (("product", "compose.env"), ("product-sim", "sim.env")):
        (call,) = [c for c in _compose_calls(_make_n(docker_only, target)) if "up" in c]
        env_files = [call[i + 1] for i, word in enumerate(call) if word == "--env-file"]
        assert env_files[0] == f"venues/{name}/deploy/compose.env" and env_files[-1] == f"venues/{name}/deploy/{last}"
        assert all((ROOT / f).is_file() for f in env_files)
    (call,) = _compose_calls(_make_n(docker_only, "product", "MDPIPE_VENUE=another"))
    assert call[call.index("--env-file") + 1] == "venues/another/deploy/compose.env"


def _other_venue() -> str:
    """A venue with deployment files that is not the default (make's choice must reach compose)."""
    from venues import default_name, names

    return next(
        n for n in names() if n != default_name() and (ROOT / "venues" / n / "deploy" / "compose.env").is_file()
    )


@pytest.mark.parametrize("target", ["up", "down", "status", "demo", "test", "setup", "product", "product-down"])
def test_every_compose_call_names_the_venue_make_chose(docker_only: Path, target: str) -> None:
    """make's venue reaches compose (MDPIPE_VENUE=<name> before `docker compose`, which infra/.env cannot override)
    with that venue's file, for the stack targets too: compose refuses any command without a venue."""
    other = _other_venue()
    script = "\n".join(_make_n(docker_only, target, f"MDPIPE_VENUE={other}")).replace("\\\n", " ")
    calls = [words for line in script.splitlines() for words in _commands(line) if "compose" in words]
    assert calls
    for words in calls:
        words = [w for w in words if w not in ("if", "then", "else", "fi")]
        start = words.index("docker")
        assert f"MDPIPE_VENUE={other}" in words[:start], words
        assert words[start:][: len(_compose_words(other))] == _compose_words(other), words


# --- make product refuses what compose would silently ignore ---------------------------------------------------------
def _checkout(tmp_path: Path) -> Path:
    """The files the compose targets read, copied: the Makefile, infra's compose file and stack script, each venue's
    package marker and deployment files (an infra/.env of a test's own never touches the real checkout)."""
    out = tmp_path / "checkout"
    for path in [ROOT / "Makefile", ROOT / "infra" / "stack.sh", ROOT / "infra" / "compose.yaml"]:
        (out / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / path.relative_to(ROOT))
    for package in (ROOT / "venues").glob("*/__init__.py"):
        shutil.copytree(package.parent / "deploy", out / "venues" / package.parent.name / "deploy", dirs_exist_ok=True)
        shutil.copy2(package, out / "venues" / package.parent.name / "__init__.py")
    return out


def _make(tmp_path: Path, checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`make` for real (not -n) with a `docker` that prints its arguments and the tools the recipes use."""
    folder = _fake_bin(tmp_path)
    for tool in ("grep", "sed", "sort", "tr", "env", "cat"):
        (folder / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    return subprocess.run(
        [str(MAKE), "--no-print-directory", "-C", str(checkout), "STACK=compose", *args],
        env=_env(folder, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "old",
    [
        "MDPIPE_ACME_KEY_ID",
        "MDPIPE_ACME_PRIVATE_KEY_FILE",
        "MDPIPE_X2_KEY_ID",
        "MDPIPE_VENUE_KEY_ID",
        "MDPIPE_VENUE_PRIVATE_KEY_FILE",
    ],
)
@pytest.mark.parametrize("where", ["environment", "infra/.env"])
def test_compose_targets_refuse_the_old_key_variable_names(tmp_path: Path, old: str, where: str) -> None:
    checkout = _checkout(tmp_path)
    env = {old: "x"} if where == "environment" else {}
    if where == "infra/.env":
        (checkout / "infra" / ".env").write_text(f"GRAFANA_ADMIN_PASSWORD=a\nexport {old}=x\n")
    for target in ("product", "up"):
        done = _make(tmp_path / target, checkout, target, **env)
        assert done.returncode == 2 and "docker compose" not in done.stdout, done.stdout + done.stderr
        (line,) = done.stderr.splitlines()[:1]
        assert old in line and "rename" in line and "docs/deploy.md" in line


def test_compose_targets_accept_the_shared_and_per_gatherer_key_variables(tmp_path: Path) -> None:
    """VENUE_KEY_ID / VENUE_PRIVATE_KEY_FILE (shared), MDPIPE_G<n>_* (one gatherer's) and mdpipe settings pass."""
    checkout = _checkout(tmp_path)
    (checkout / "infra" / ".env").write_text("MDPIPE_G1_KEY_ID=a\nMDPIPE_G12_PRIVATE_KEY_FILE=b\n")
    done = _make(tmp_path, checkout, "product", VENUE_KEY_ID="c", VENUE_PRIVATE_KEY_FILE="e", MDPIPE_VENUE__KEY_ID="d")
    assert done.returncode == 0, done.stderr
    assert "docker compose -f infra/compose.yaml" in done.stdout


def test_the_deployment_guide_starts_with_the_rename() -> None:
    """docs/deploy.md says, before its first section, which variables were renamed (the Makefile's message points
    there)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    top = text[: text.index("\n## ")]
    assert "Upgrading" in top
    old = {m.group(1) for m in re.finditer(r"MDPIPE_(?!G<n>)([A-Z]+)_(?:KEY_ID|PRIVATE_KEY_FILE)", top)}
    assert "VENUE" in old and len(old) == 2, old  # the first venue's names, then MDPIPE_VENUE_*
    assert "`VENUE_KEY_ID`" in top and "`VENUE_PRIVATE_KEY_FILE`" in top


def test_the_venue_of_infra_env_is_makes_venue_too(tmp_path: Path) -> None:
    """MDPIPE_VENUE in infra/.env (which compose reads) picks the venue's files for make as well; make's command line
    and the environment win over it, for compose too."""
    from venues import default_name

    checkout, other = _checkout(tmp_path), _other_venue()
    (checkout / "infra" / ".env").write_text(f'GRAFANA_ADMIN_USER=a\nMDPIPE_VENUE="{other}"  # mine\n')
    cases = (([], {}, other), ([f"MDPIPE_VENUE={default_name()}"], {}, default_name()))
    cases += (([], {"MDPIPE_VENUE": default_name()}, default_name()),)
    for i, (args, env, expected) in enumerate(cases):
        done = _make(tmp_path / str(i), checkout, "product", *args, **env)
        assert done.returncode == 0, done.stderr
        call = _compose_calls(done.stdout.splitlines())[-1]  # what the fake docker received
        env_files = [call[j + 1] for j, word in enumerate(call) if word == "--env-file"]
        assert env_files == [f"venues/{expected}/deploy/compose.env", "infra/.env"], (args, env)
