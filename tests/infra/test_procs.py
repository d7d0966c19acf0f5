"""Process/port helpers and the launchers' pure parts (no broker, no database)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from infra.kafka_native import KafkaBroker, _cluster_id
from infra.procs import free_port, pid_alive, port_free, port_open, read_json, stop_pid, write_json


def test_free_port_is_bindable_and_port_open_sees_listeners() -> None:
    port = free_port()
    assert port_free(port)
    assert not port_open(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_open(port)
        assert not port_free(port)


def test_stop_pid_terminates_then_kills_a_stubborn_child() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert pid_alive(polite.pid)
    assert stop_pid(polite.pid, timeout=10) is False  # SIGTERM was enough
    assert not pid_alive(polite.pid)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == b"1"
    assert stop_pid(stubborn.pid, timeout=0.3) is True  # needed SIGKILL
    assert not pid_alive(stubborn.pid)


def test_json_state_round_trip_and_missing_file(tmp_path: Path) -> None:
    assert read_json(tmp_path / "none.json") == {}
    write_json(tmp_path / "a" / "s.json", {"port": 5})
    assert read_json(tmp_path / "a" / "s.json") == {"port": 5}


def test_cluster_id_is_kafka_uuid_text() -> None:
    for _ in range(50):
        cid = _cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) and not cid.startswith("-")


def test_broker_properties_disable_auto_create_and_keep_ports(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, overrides={"log.retention.hours": "1"})
    broker._choose_ports()
    props = dict(line.split("=", 1) for line in broker._properties().splitlines())
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{broker.port}"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{broker.controller_port}"
    assert props["log.dirs"] == str(tmp_path.resolve() / "kafka" / "data")
    assert props["log.retention.hours"] == "1"
    broker._save()
    again = KafkaBroker(tmp_path)  # a new handle finds the same ports (restart keeps the address)
    again._choose_ports()
    assert (again.port, again.controller_port) == (broker.port, broker.controller_port)
