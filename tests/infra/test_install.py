"""`mdpipe infra install` is idempotent: with matching stamp and binaries present it runs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import install
from infra.kafka_native import kafka_libs_dir, kafka_version
from infra.postgres_native import find_pg_bin


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"install ran a command although everything is present: {args}")


@pytest.mark.skipif(not (kafka_libs_dir() / ".stamp").is_file(), reason="needs `mdpipe infra install` once")
def test_second_install_runs_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.subprocess, "run", _no_subprocess)
    assert install.install_kafka() == kafka_version()
    if find_pg_bin() is not None:
        assert install.install_postgres() == find_pg_bin()


def test_stale_stamp_triggers_maven_into_a_fresh_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".stamp").write_text("an older pom\n")
    monkeypatch.setenv("MDPIPE_KAFKA_LIBS", str(libs))
    monkeypatch.setattr(install.shutil, "which", lambda name: f"/usr/bin/{name}")
    calls: list[list[str]] = []

    def fake_maven(cmd: list[str], **kwargs: object) -> object:
        calls.append(cmd)
        out = Path(next(a for a in cmd if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "kafka_2.13-9.9.9.jar").write_bytes(b"")

        class Done:
            returncode, stdout, stderr = 0, "", ""

        return Done()

    monkeypatch.setattr(install.subprocess, "run", fake_maven)
    assert install.install_kafka() == "9.9.9"
    assert len(calls) == 1 and calls[0][0] == "/usr/bin/mvn" and "dependency:copy-dependencies" in calls[0]
    assert (libs / ".stamp").read_text().strip() != "an older pom"
    assert not libs.with_name("libs.partial").exists()


def test_promtool_is_optional_when_apt_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)

    def failing_apt(cmd: list[str], **kwargs: object) -> object:
        class Done:
            returncode, stdout, stderr = 100, "", "E: Unable to locate package prometheus"

        return Done()

    monkeypatch.setattr(install.subprocess, "run", failing_apt)
    assert install.install_promtool() is None  # logged, not raised: only the alert-rule tests need it


def test_promtool_present_runs_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(install.subprocess, "run", _no_subprocess)
    assert install.install_promtool() == "/usr/bin/promtool"
