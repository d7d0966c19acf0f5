"""`mdpipe config show`: print the effective configuration (TOML + environment), secrets redacted."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mdpipe.config import Config, redacted

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "config",
        help="show the effective configuration",
        description="Inspect the configuration every command would use.",
    )
    parser.add_argument("action", choices=["show"], help="show: print the effective settings, secrets masked")
    parser.add_argument("--json", action="store_true", help="print JSON instead of TOML-like text")
    return parser


def _toml_value(value: Any) -> str:
    return json.dumps(value)


def run(args: argparse.Namespace, config: Config) -> int:
    data = redacted(config)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for section, values in data.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {_toml_value(value)}")
        print()
    return 0
