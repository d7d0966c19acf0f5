"""The one `mdpipe` command: a subcommand per stage (in that stage's ``cli.py``) and per cross-stage command (ops/).

Every stage module exposes ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args, config) -> int``. Heavy imports stay inside ``run`` so ``--help`` is fast.

Failures a user can meet are one line on stderr, never a traceback (JSON with ``--log-format json``):
configuration errors name the setting (exit status 2); expected runtime failures -- a database or broker that
is unreachable or refuses the credentials, a DSN that does not parse, a missing topic, a venue refusing the API
key -- name what failed and what to check, with exit status 1 (unavailable) or 2 (fix something first); see
:mod:`mdpipe.failures`. This is the one place that happens: commands raise, or let the library exceptions
propagate, and :func:`main` explains them. Anything unrecognised is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mdpipe import __version__
from mdpipe.config import Config, ConfigError, load_config
from mdpipe.failures import explain
from mdpipe.logging import configure_logging, failure_line

__all__ = ["COMMANDS", "build_parser", "main"]

# subcommand name -> module providing add_parser/run, in the order `--help` lists them. Names only: a module (and
# the stage it belongs to) is imported when its command is used, so this ground floor imports no stage.
COMMANDS: dict[str, str] = {
    "infra": "infra.cli",
    "topics": "mdpipe.topics_cli",
    "config": "mdpipe.config_cli",
    "sim": "venue_sim.cli",
    "gather": "ingest.cli",
    "dedup": "dedup_stream.cli",
    "sink": "sink.cli",
    "verify": "ops.verify_cli",
    "book": "ops.book_cli",
    "replay": "ops.replay_cli",
    "export": "archive.export_cli",
    "archive": "archive.archive_cli",
    "status": "ops.status_cli",
    "demo": "ops.demo_cli",
}


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommands ``commands`` (default: all of :data:`COMMANDS`), each module imported here."""
    parser = argparse.ArgumentParser(
        prog="mdpipe",
        description="Market-data capture pipeline: venue -> gatherers -> Kafka -> dedup -> sink -> database.",
        epilog="Settings come from a TOML file (--config, $MDPIPE_CONFIG or ./mdpipe.toml) and "
        "MDPIPE_<SECTION>__<KEY> environment variables; see `mdpipe config show`.",
    )
    parser.add_argument("--version", action="version", version=f"mdpipe {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (default: $MDPIPE_CONFIG, ./mdpipe.toml)"
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log.level for this run"
    )
    parser.add_argument("--log-format", choices=["kv", "json"], help="override log.format: key=value or JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in (COMMANDS[name] for name in (COMMANDS if commands is None else commands)):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # stage not built in this checkout
            raise
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, if it names one of :data:`COMMANDS` (global options may come first)."""
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--config", "--log-level", "--log-format"):
        pre.add_argument(flag)
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    return known.command if known.command in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_named(argv)
    # Only the command in use is imported (with its stage); without one (--help, a typo) all are, to list them.
    parser = build_parser([command] if command else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(failure_line(str(exc), args.log_format or "kv", exit_status=2), file=sys.stderr)
        return 2
    fmt = args.log_format or config.log.format
    configure_logging(args.log_level or config.log.level, fmt)
    try:
        return int(args._run(args, config) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _failed(exc, args.command, config, fmt)


def _failed(exc: Exception, command: str, config: Config, fmt: str) -> int:
    """One line for an expected failure (its exit status); re-raise anything else (a bug: keep the traceback)."""
    if isinstance(exc, ConfigError):
        message, status = str(exc), 2
    else:
        failure = explain(exc, config)
        if failure is None:
            raise exc
        message, status = str(failure), failure.exit_status
    print(failure_line(message, fmt, command=command, exit_status=status), file=sys.stderr)
    return status
