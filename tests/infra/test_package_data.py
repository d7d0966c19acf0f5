"""A regular (wheel) install, as the container image makes, ships the files `mdpipe infra` and the sink read next to
their modules: the compose file, the native broker's pom and logging configuration, the monitoring files, the
migrations (pyproject.toml [tool.setuptools.package-data])."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Files read at run time through Path(__file__).parent of their package (infra/manager.py, infra/install.py,
# infra/kafka_native.py, sink/migrate.py).
READ_AT_RUN_TIME = {
    "infra": ["compose.yaml", "kafka/pom.xml", "kafka/log4j2.properties", "kafka/log4j2-tools.properties"],
    "sink": ["migrations/0001_core.sql"],
}


def _package_data() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]


def test_files_read_next_to_the_modules_are_package_data() -> None:
    data = _package_data()
    for package, files in READ_AT_RUN_TIME.items():
        shipped = {
            p.relative_to(ROOT / package).as_posix()
            for pattern in data[package]
            for p in (ROOT / package).glob(pattern)
        }
        assert set(files) <= shipped, f"{package}: not shipped by a regular install: {sorted(set(files) - shipped)}"


def test_every_package_data_pattern_matches_a_file_and_no_secret() -> None:
    for package, patterns in _package_data().items():
        for pattern in patterns:
            matched = list((ROOT / package).glob(pattern))
            assert matched, f"{package}/{pattern} matches nothing"
            assert not any("secrets" in p.relative_to(ROOT).parts for p in matched), pattern
