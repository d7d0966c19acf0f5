"""``mdpipe.example.toml`` and each venue's section of it cannot rot: the example, assembled with a venue's
``venues/<name>/deploy/venue.toml`` as its README says, loads through the project's config loader as the production
configuration it claims to be, and every setting and environment variable they name exists. (A venue's production
guide and its own facts: ``tests/venues/<name>/``.)"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import msgspec
import pytest

import venues
from mdpipe.cli import build_parser
from mdpipe.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mdpipe.example.toml"

SETTING = re.compile(r"`(kafka|postgres|venue|gather|dedup|sink|sim|log)\.([a-z_]+)`")
ENV_VAR = re.compile(r"\bMDPIPE_([A-Z]+)__([A-Z_]+)\b")
COMMAND_FLAG = re.compile(r"`(?:mdpipe )?(gather|dedup|sink|sim|status|topics|verify) (--[a-z][a-z-]*)")


def venue_sections() -> dict[str, Path]:
    """Venue name -> its section of the example (the venues whose folder has ``deploy/venue.toml``)."""
    found = {n: ROOT / "venues" / n / "deploy" / "venue.toml" for n in venues.names()}
    return {n: path for n, path in found.items() if path.is_file()}


def assembled(name: str, folder: Path) -> Path:
    """``cat mdpipe.example.toml venues/<name>/deploy/venue.toml > mdpipe.toml``, in ``folder``."""
    path = folder / f"mdpipe-{name}.toml"
    path.write_text(EXAMPLE.read_text() + venue_sections()[name].read_text())
    return path


def _fields() -> dict[str, set[str]]:
    """Config section name -> its setting names."""
    out: dict[str, set[str]] = {}
    for section in msgspec.structs.fields(Config):
        out[section.name] = {f.name for f in msgspec.structs.fields(section.type)}
    return out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _shell_commands(markdown: str) -> list[list[str]]:
    """The ``mdpipe ...`` command lines of the guide's ``sh`` blocks, leading VAR=value assignments removed."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words.pop(0)
            if words and words[0] == "mdpipe":
                commands.append(words[1:])
    return commands


def test_the_default_venue_has_a_section() -> None:
    assert venues.default_name() in venue_sections()


@pytest.mark.parametrize("name", sorted(venue_sections()))
def test_the_example_loads_as_a_production_configuration_with_the_venues_section(name: str, tmp_path: Path) -> None:
    cfg = load_config(assembled(name, tmp_path), environ={}, use_infra_state=False)
    assert cfg.venue.name == name
    assert cfg.venue.rest_url.startswith("https://") and cfg.venue.ws_url.startswith("wss://")
    assert cfg.venue.ca_file == "", "the real venue is trusted through the system store"
    assert cfg.gather.ids == ["g1", "g2", "g3"]
    assert cfg.kafka.replication_factor == 3 and cfg.kafka.min_insync_replicas == 2
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.kafka.sasl_mechanism
    assert {cfg.gather.metrics_host, cfg.dedup.metrics_host, cfg.sink.metrics_host} == {"0.0.0.0"}
    # secrets never in the file: they come from the environment
    secrets = (cfg.kafka.sasl_password, cfg.postgres.dsn, cfg.venue.key_id, cfg.venue.private_key_pem)
    assert secrets == ("", "", "", "")


def test_the_example_takes_its_secrets_from_the_environment(tmp_path: Path) -> None:
    env = {
        "MDPIPE_VENUE__KEY_ID": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c",
        "MDPIPE_VENUE__PRIVATE_KEY_PATH": "/etc/mdpipe/venue-g1.key",
        "MDPIPE_KAFKA__SASL_PASSWORD": "secret",
        "MDPIPE_POSTGRES__DSN": "postgresql://mdpipe@tsdb.internal:5432/mdpipe",
        "MDPIPE_VENUE__REST_URL": "https://demo.venue.example/api",
    }
    cfg = load_config(assembled(venues.default_name(), tmp_path), environ=env, use_infra_state=False)
    assert cfg.venue.key_id == env["MDPIPE_VENUE__KEY_ID"]
    assert cfg.venue.private_key_path == env["MDPIPE_VENUE__PRIVATE_KEY_PATH"]
    assert cfg.kafka.sasl_password == "secret" and cfg.postgres.dsn.startswith("postgresql://")
    assert cfg.venue.rest_url == env["MDPIPE_VENUE__REST_URL"]


def test_a_mistyped_setting_in_the_example_would_be_refused(tmp_path: Path) -> None:
    """The loader rejects unknown keys, so loading the example checks every key in it."""
    broken = tmp_path / "mdpipe.toml"
    broken.write_text(EXAMPLE.read_text().replace("rest_requests_per_s =", "rest_request_per_s ="))
    with pytest.raises(ConfigError, match="rest_request_per_s"):
        load_config(broken, environ={}, use_infra_state=False)


def settings_named(text: str) -> set[tuple[str, str]]:
    """(section, setting) of every `section.setting` and MDPIPE_SECTION__SETTING in ``text``."""
    return {(s, k) for s, k in SETTING.findall(text)} | {(s.lower(), k.lower()) for s, k in ENV_VAR.findall(text)}


def unknown_settings(named: set[tuple[str, str]]) -> list[str]:
    fields = _fields()
    return sorted(f"{s}.{k}" for s, k in named if k not in fields.get(s, set()))


@pytest.mark.parametrize("name", ["example", *sorted(venue_sections())])
def test_every_setting_and_environment_variable_named_exists(name: str) -> None:
    text = (EXAMPLE if name == "example" else venue_sections()[name]).read_text()
    named = settings_named(text)
    assert len(named) >= (5 if name == "example" else 2), "the patterns still find the settings"
    assert unknown_settings(named) == []
