"""Configuration: TOML + environment overlay, validation errors as one line naming the setting, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdpipe.cli import main
from mdpipe.config import ConfigError, load_config, redacted


def test_defaults_and_env_overlay(tmp_path: Path) -> None:
    toml = tmp_path / "mdpipe.toml"
    toml.write_text('[kafka]\npartitions = 12\n[gather]\nids = ["a1", "b2"]\n')
    cfg = load_config(
        toml, environ={"MDPIPE_KAFKA__PARTITIONS": "24", "MDPIPE_SINK__BATCH_ROWS": "500"}, use_infra_state=False
    )
    assert cfg.kafka.partitions == 24  # environment beats the file
    assert cfg.sink.batch_rows == 500
    assert cfg.gather.ids == ["a1", "b2"] and cfg.kafka.partitions == 24


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MDPIPE_KAFKA__PARTITIONS": "many"}, "config setting kafka.partitions (environment): Expected `int`"),
        ({"MDPIPE_KAFKA__PARTITIONS": "0"}, "config setting kafka.partitions (environment): must be > 0"),
        ({"MDPIPE_LOG__FORMAT": "xml"}, "accepted: 'kv', 'json'"),
        ({"MDPIPE_KAFKA__COMPRESSION": "brotli"}, "config setting kafka.compression"),
        ({"MDPIPE_GATHER__IDS": '["G 1"]'}, "config setting gather.ids"),
        ({"MDPIPE_NOPE__X": "1"}, "MDPIPE_NOPE__X: unknown section 'nope'"),
        ({"MDPIPE_SINK__BATCH_ROW": "1"}, "unknown field `batch_row`"),
    ],
)
def test_bad_values_name_the_setting_in_one_line(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=env, use_infra_state=False)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_toml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, environ={}, use_infra_state=False)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", environ={}, use_infra_state=False)


def test_secrets_are_redacted() -> None:
    cfg = load_config(
        environ={
            "MDPIPE_KAFKA__SASL_PASSWORD": "hunter2",
            "MDPIPE_POSTGRES__DSN": "postgresql://app:s3cret@db:5432/md",
            "MDPIPE_VENUE__PRIVATE_KEY_PEM": "-----BEGIN PRIVATE KEY-----",
        },
        use_infra_state=False,
    )
    shown = redacted(cfg)
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["venue"]["private_key_pem"] == "***"
    assert shown["postgres"]["dsn"] == "postgresql://app:***@db:5432/md"


def test_cli_stops_with_one_line_on_bad_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MDPIPE_SINK__BATCH_MS", "-5")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mdpipe: config setting sink.batch_ms (environment): must be > 0, got -5"


def test_cli_config_show(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MDPIPE_KAFKA__SASL_PASSWORD", "hunter2")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "[kafka]" in out and "hunter2" not in out and 'sasl_password = "***"' in out
