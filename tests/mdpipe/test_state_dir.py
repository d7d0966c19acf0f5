"""Where runtime state goes (mdpipe.config.run_dir): $MDPIPE_RUN_DIR, else `.run/` of a source checkout, else the
per-user state folder; a regular install never writes inside its own package folder."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import mdpipe
from mdpipe.config import is_checkout, run_dir

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MDPIPE_RUN_DIR / MDPIPE_HOME / XDG_STATE_HOME, and HOME in a temporary folder."""
    for name in ("MDPIPE_RUN_DIR", "MDPIPE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def installed_config(tmp_path: Path) -> Iterator[ModuleType]:
    """mdpipe/config.py as a regular install lays it out: <site-packages>/mdpipe/config.py, no pyproject.toml
    above it. Loaded under its own module name so the checkout's mdpipe stays untouched."""
    site = tmp_path / "site-packages"
    shutil.copytree(Path(mdpipe.__file__).parent, site / "mdpipe", ignore=shutil.ignore_patterns("__pycache__"))
    name = "mdpipe_installed_config"
    spec = importlib.util.spec_from_file_location(name, site / "mdpipe" / "config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


def test_a_checkout_keeps_its_dot_run_folder(clean_env: Path) -> None:
    assert is_checkout()
    assert run_dir() == CHECKOUT / ".run"


def test_mdpipe_home_names_the_checkout(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "clone"
    other.mkdir()
    (other / "pyproject.toml").write_text("[project]\nname = 'mdpipe'\n")
    monkeypatch.setenv("MDPIPE_HOME", str(other))
    assert run_dir() == other / ".run"


def test_mdpipe_run_dir_wins_everywhere(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed_config: ModuleType
) -> None:
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path / "state"))
    assert run_dir() == tmp_path / "state"
    assert installed_config.run_dir() == tmp_path / "state"


def test_an_installed_package_keeps_state_in_the_user_state_folder(
    clean_env: Path, installed_config: ModuleType
) -> None:
    site = Path(installed_config.__file__).parent.parent
    assert not installed_config.is_checkout()
    state = installed_config.run_dir()
    assert state == clean_env / ".local" / "state" / "mdpipe"
    assert site not in state.parents and state != site / ".run"


def test_xdg_state_home_is_honoured_when_absolute(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed_config: ModuleType
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert installed_config.run_dir() == tmp_path / "xdg" / "mdpipe"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # the XDG spec says: ignore a relative path
    assert installed_config.run_dir() == clean_env / ".local" / "state" / "mdpipe"


def test_downloaded_tools_go_to_the_checkouts_cache_or_the_user_cache(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed_config: ModuleType
) -> None:
    """The native broker's jars (`mdpipe infra install`) never land inside an installed package either."""
    from infra.kafka_native import kafka_libs_dir

    monkeypatch.delenv("MDPIPE_KAFKA_LIBS", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert kafka_libs_dir() == CHECKOUT / ".cache" / "kafka" / "libs"
    assert installed_config.cache_dir() == clean_env / ".cache" / "mdpipe"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert installed_config.cache_dir() == tmp_path / "cache" / "mdpipe"
