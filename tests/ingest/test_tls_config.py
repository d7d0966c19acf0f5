"""``venue.ca_file`` / ``mdpipe gather --ca-file``: a CA file that cannot be used stops the gatherer at start-up with
one line naming the setting (before it touches the broker or the venue); a usable one is what the clients trust."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from ingest.tls import client_context
from mdpipe.cli import main
from venue_sim.tls import make_certificates


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "garbage"])
def test_an_unusable_ca_file_stops_the_gatherer_with_one_line(
    content: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    monkeypatch.chdir(tmp_path)  # no ./mdpipe.toml
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MDPIPE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached
    monkeypatch.setenv("MDPIPE_VENUE__WS_URL", "wss://127.0.0.1:9/trade-api/ws/v2")
    status = main(["gather", "--id", "g1", "--no-auth", "--no-partition-check", "--ca-file", str(ca)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("mdpipe: config setting venue.ca_file"), err
    assert str(ca) in err[0] and "cannot load a CA certificate" in err[0]


def test_the_ca_file_is_the_only_trust_and_hostnames_are_checked(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path / "tls")
    context = client_context(tls.ca_file)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert len(subjects) == 1, "only the given CA, not the system store"
    system = client_context("")
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
