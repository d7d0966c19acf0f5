"""``mdpipe.example.toml`` and ``docs/production-kalshi.md`` cannot rot: the example loads through the project's
config loader as the production configuration it claims to be, and every setting, environment variable, command
and flag the production guide names exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import msgspec
import pytest

from mdpipe.cli import build_parser
from mdpipe.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mdpipe.example.toml"
GUIDE = ROOT / "docs" / "production-kalshi.md"

SETTING = re.compile(r"`(kafka|postgres|venue|gather|dedup|sink|sim|log)\.([a-z_]+)`")
ENV_VAR = re.compile(r"\bMDPIPE_([A-Z]+)__([A-Z_]+)\b")
COMMAND_FLAG = re.compile(r"`(?:mdpipe )?(gather|dedup|sink|sim|status|topics|verify) (--[a-z][a-z-]*)")


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


def test_the_example_loads_as_a_production_kalshi_configuration() -> None:
    cfg = load_config(EXAMPLE, environ={}, use_infra_state=False)
    assert cfg.venue.name == "kalshi" and cfg.venue.auth
    assert cfg.venue.rest_url == "https://external-api.kalshi.com/trade-api/v2"
    assert cfg.venue.ws_url == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    assert cfg.venue.ca_file == "", "the real venue is trusted through the system store"
    assert cfg.gather.ids == ["g1", "g2", "g3"]
    # three gatherers on one Basic-tier account (200 read tokens/s at 10 tokens a request) stay under its budget
    assert len(cfg.gather.ids) * cfg.gather.rest_requests_per_s < 200 / 10
    assert cfg.kafka.replication_factor == 3 and cfg.kafka.min_insync_replicas == 2
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.kafka.sasl_mechanism
    assert {cfg.gather.metrics_host, cfg.dedup.metrics_host, cfg.sink.metrics_host} == {"0.0.0.0"}
    # secrets never in the file: they come from the environment
    secrets = (cfg.kafka.sasl_password, cfg.postgres.dsn, cfg.venue.key_id, cfg.venue.private_key_pem)
    assert secrets == ("", "", "", "")


def test_the_example_takes_its_secrets_from_the_environment() -> None:
    env = {
        "MDPIPE_VENUE__KEY_ID": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c",
        "MDPIPE_VENUE__PRIVATE_KEY_PATH": "/etc/mdpipe/kalshi-g1.key",
        "MDPIPE_KAFKA__SASL_PASSWORD": "secret",
        "MDPIPE_POSTGRES__DSN": "postgresql://mdpipe@tsdb.internal:5432/mdpipe",
        "MDPIPE_VENUE__REST_URL": "https://external-api.demo.kalshi.co/trade-api/v2",
    }
    cfg = load_config(EXAMPLE, environ=env, use_infra_state=False)
    assert cfg.venue.key_id == env["MDPIPE_VENUE__KEY_ID"]
    assert cfg.venue.private_key_path == env["MDPIPE_VENUE__PRIVATE_KEY_PATH"]
    assert cfg.kafka.sasl_password == "secret" and cfg.postgres.dsn.startswith("postgresql://")
    assert cfg.venue.rest_url.startswith("https://external-api.demo.kalshi.co/")


def test_a_mistyped_setting_in_the_example_would_be_refused(tmp_path: Path) -> None:
    """The loader rejects unknown keys, so loading the example checks every key in it."""
    broken = tmp_path / "mdpipe.toml"
    broken.write_text(EXAMPLE.read_text().replace("rest_requests_per_s =", "rest_request_per_s ="))
    with pytest.raises(ConfigError, match="rest_request_per_s"):
        load_config(broken, environ={}, use_infra_state=False)


@pytest.mark.parametrize("path", [GUIDE, EXAMPLE], ids=["guide", "example"])
def test_every_setting_and_environment_variable_named_exists(path: Path) -> None:
    text = path.read_text()
    fields = _fields()
    named = {(s, k) for s, k in SETTING.findall(text)} | {(s.lower(), k.lower()) for s, k in ENV_VAR.findall(text)}
    assert len(named) >= (10 if path == GUIDE else 5), "the patterns still find the settings"
    unknown = sorted(f"{s}.{k}" for s, k in named if k not in fields.get(s, set()))
    assert unknown == []


def test_every_command_and_flag_in_the_guide_exists() -> None:
    text = GUIDE.read_text()
    commands = _shell_commands(text)
    assert len(commands) >= 8, commands
    parser = build_parser()
    for words in commands:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parser.parse_args(words)
            except SystemExit:
                pytest.fail(f"`mdpipe {shlex.join(words)}` does not parse: {err.getvalue().strip()}")
    subparsers = _subparsers()
    flags = COMMAND_FLAG.findall(text)
    assert len(flags) >= 5, flags
    missing = [f"{cmd} {flag}" for cmd, flag in flags if flag not in subparsers[cmd]._option_string_actions]
    assert missing == []


def test_the_gatherer_benchmark_the_guide_names_has_tls() -> None:
    from bench.gatherer.__main__ import main

    assert "BENCH_ARGS=--tls" in GUIDE.read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    assert "--tls" in out.getvalue()
