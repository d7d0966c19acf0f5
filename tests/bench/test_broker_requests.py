"""The broker's produce-request benchmark runs both clients at a tiny size: every record it counts is stored, spread
over every partition, in one request per partition per release (librdkafka) or one per release (aiokafka)."""

from __future__ import annotations

import json

import pytest

from bench.broker.produce_requests import main as bench_requests


@pytest.mark.integration
def test_both_clients_deliver_every_release_to_every_partition(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 producers per client, 1,000 records a second in 40-ms releases (40 each, 10 to each of 4 partitions), 1.5 s:
    # ~38 releases each; the records each client counted are what its topics hold at the end, partition by partition
    monkeypatch.setenv("MDPIPE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    argv = ["--producers", "2", "--rate", "1000", "--partitions", "4", "--duration", "1.5", "--rounds", "1"]
    argv += ["--idle-s", "0.5"]
    assert bench_requests(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["bench"] == "broker-produce-requests"
    assert [r["mode"] for r in result["runs"]] == ["rd", "aio", "aio-send"]
    for mode in ("rd", "aio", "aio-send"):
        records, stored = result["records"][mode], result["stored"][mode]
        assert records >= 2 * 30 * 40 and stored == [records // 4] * 4, (mode, records, stored)
        assert result["client_us_per_record"][mode] > 0
    assert result["requests_per_release"]["rd"] >= 3.0  # one request per partition (4) per release
    assert result["requests_per_release"]["aio"] <= 1.5  # every partition of a release in one request
