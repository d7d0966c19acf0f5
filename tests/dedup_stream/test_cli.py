"""`mdpipe dedup --help` documents every option; topic names follow kafka.topic_prefix."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dedup_stream.cli import add_parser, topic_names
from mdpipe.config import ConfigError, load_config


def test_every_option_has_help() -> None:
    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"workdir", "metrics_port", "app_id", "from_ts", "to_ts", "exit_when_idle"} <= {a.dest for a in options}
    for action in options:
        assert action.help and len(action.help) > 10, action.dest


def test_topic_names_use_prefix() -> None:
    config = load_config(environ={}, use_infra_state=False)
    assert topic_names(config) == (["raw.g1", "raw.g2", "raw.g3"], "events", "dlq")
    prefixed = msgspec.structs.replace(config, kafka=msgspec.structs.replace(config.kafka, topic_prefix="x."))
    assert topic_names(prefixed) == (["x.raw.g1", "x.raw.g2", "x.raw.g3"], "x.events", "x.dlq")


def test_group_instance_id_defaults_to_host_and_workdir_and_none_turns_it_off(tmp_path: Path) -> None:
    import socket

    from dedup_stream.cli import group_instance_id

    assert group_instance_id("", tmp_path / "dedup-2") == f"{socket.gethostname()}-dedup-2"
    assert group_instance_id("east-a", tmp_path / "w1") == "east-a"
    assert group_instance_id("none", tmp_path / "w1") == "" and group_instance_id("None", tmp_path / "w1") == ""


def test_out_of_range_overrides_stop_the_command_before_it_touches_the_broker(monkeypatch: Any, tmp_path: Path) -> None:
    """A bad --window-s / --session-timeout-s / --standby-replicas is one line naming the flag, raised before the
    broker is asked anything (a negative window once seeded a replay's offsets, then ran or crashed later)."""
    import mdpipe.preflight
    from dedup_stream.cli import run

    def broker_asked(*_: Any, **__: Any) -> None:
        raise AssertionError("the broker was contacted before the flags were checked")

    monkeypatch.setattr(mdpipe.preflight, "require_broker", broker_asked)
    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    config = load_config(environ={}, use_infra_state=False)
    for argv, flag in (
        (["--window-s", "-5", "--from-ts", "1700000000000"], "--window-s must be > 0, got -5.0"),
        (["--window-s", "0"], "--window-s must be > 0"),
        (["--session-timeout-s", "-1"], "--session-timeout-s must be > 0"),
        (["--standby-replicas", "-1"], "--standby-replicas must be >= 0"),
    ):
        with pytest.raises(ConfigError, match=flag):
            run(parser.parse_args([*argv, "--workdir", str(tmp_path)]), config)
