"""infra/compose.yaml: validated by `docker compose config` where the compose plugin exists, and always by a
YAML-free structural check (pinned images, auto-create off, ports matching what `mdpipe infra` reports)."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from infra.manager import COMPOSE_BOOTSTRAP, COMPOSE_DSN, COMPOSE_FILE


def _services(text: str) -> dict[str, str]:
    """Top-level services -> their indented block (enough structure for the checks, no YAML parser)."""
    blocks: dict[str, str] = {}
    in_services, current = False, ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_services, current = line.rstrip() == "services:", ""
            continue
        if in_services and re.match(r"^  [A-Za-z0-9_-]+:\s*$", line):
            current = line.strip().rstrip(":")
            blocks[current] = ""
        elif in_services and current:
            blocks[current] += line + "\n"
    return blocks


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


def test_compose_file_structure_without_yaml_parser() -> None:
    text = COMPOSE_FILE.read_text()
    assert "\t" not in text
    services = _services(text)
    assert set(services) == {"redpanda", "console", "timescaledb"}
    images = {name: re.search(r"image:\s*(\S+)", block).group(1) for name, block in services.items()}  # type: ignore[union-attr]
    for name, image in images.items():
        assert re.search(r":v?\d+\.\d+\.\d+(-pg\d+)?$", image), f"{name} image not pinned: {image}"
    assert images["timescaledb"].startswith("timescale/timescaledb:") and images["timescaledb"].endswith("-pg17")
    assert "--mode dev-container" in services["redpanda"]
    assert "auto_create_topics_enabled false" in services["redpanda"]
    assert "healthcheck:" in services["redpanda"] and "healthcheck:" in services["timescaledb"]
    kafka_port = COMPOSE_BOOTSTRAP.rsplit(":", 1)[1]
    assert f'"{kafka_port}:{kafka_port}"' in services["redpanda"]
    assert f"external://127.0.0.1:{kafka_port}" in services["redpanda"]
    dsn = urlsplit(COMPOSE_DSN)
    assert f'"{dsn.port}:5432"' in services["timescaledb"]
    assert f"POSTGRES_PASSWORD: {dsn.password}" in services["timescaledb"]
    assert f"POSTGRES_DB: {dsn.path.lstrip('/')}" in services["timescaledb"]


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed on this host")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
