"""`mdpipe infra install|up|down|status`: install, start, stop and inspect the local broker and database."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mdpipe.config import Config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "infra",
        help="local Kafka broker + PostgreSQL (native launchers): install, up, down, status",
        description="Manage the local infrastructure: a native Apache Kafka broker (KRaft, single node) and a "
        "PostgreSQL server, with state under .run/ and addresses in .run/infra.json.",
    )
    sub = parser.add_subparsers(dest="infra_command", metavar="ACTION", required=True)
    inst = sub.add_parser(
        "install", help="fetch Kafka jars (Maven); install PostgreSQL and promtool (apt) when missing"
    )
    inst.add_argument("--force", action="store_true", help="re-resolve the Kafka jars even when the stamp matches")
    inst.add_argument("--skip-postgres", action="store_true", help="do not check/install PostgreSQL")
    inst.add_argument(
        "--skip-promtool",
        action="store_true",
        help="do not install promtool (optional: only the alert-rule tests use it; they skip without it)",
    )
    up = sub.add_parser("up", help="start the broker and the database (reuses healthy running ones); writes infra.json")
    up.add_argument("--docker", action="store_true", help="use infra/compose.yaml (Redpanda + TimescaleDB) instead")
    down = sub.add_parser("down", help="stop the broker and the database (data is kept)")
    down.add_argument("--docker", action="store_true", help="stop the infra/compose.yaml stack")
    st = sub.add_parser("status", help="addresses, versions, TimescaleDB, health (exit 1 when unhealthy)")
    st.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _print(record: dict[str, Any]) -> None:
    for key, value in record.items():
        if not isinstance(value, dict):
            print(f"{key:<20} {value}")


def run(args: argparse.Namespace, config: Config) -> int:
    from infra import manager

    action = args.infra_command
    if action == "install":
        from infra.install import InstallError, install_kafka, install_postgres, install_promtool

        try:
            version = install_kafka(force=args.force)
            pg_bin = None if args.skip_postgres else install_postgres()
        except InstallError as exc:
            print(f"mdpipe infra install: {exc}")
            return 1
        promtool = None if args.skip_promtool else install_promtool()
        pg = "skipped" if pg_bin is None else pg_bin.parent.name
        print(f"kafka {version} jars ready; postgresql {pg} ready; promtool {'ready' if promtool else 'not installed'}")
        return 0
    if action == "up":
        from infra.kafka_native import KafkaStartError
        from infra.postgres_native import PostgresStartError

        try:
            record = manager.up_docker() if args.docker else manager.up()
        except (KafkaStartError, PostgresStartError, RuntimeError) as exc:
            print(f"mdpipe infra up: {exc}")
            return 1
        _print(record)
        return 0
    if action == "down":
        if args.docker:
            result = manager.down_docker()
            print(json.dumps(result))
            return 0 if result["stopped"] else 1
        result = manager.down()
        print(json.dumps(result))
        return 0 if not (result["kafka_running"] or result["postgres_running"]) else 1
    record = manager.status()
    if args.json:
        print(json.dumps(record))
    else:
        _print(record)
    return 0 if record.get("healthy") else 1
