"""``mdpipe replay --from-archive DIR`` (wired in :mod:`ops.replay_cli`): migrate, replay, print a summary."""

from __future__ import annotations

import argparse
import json

from mdpipe.config import Config, ConfigError

__all__ = ["run_from_archive"]


def run_from_archive(args: argparse.Namespace, config: Config) -> int:
    from archive.export_cli import parse_storage_options
    from archive.reader import archive_partitions
    from archive.replay import replay_archive
    from archive.storage import open_location
    from sink.migrate import migrate

    if args.what or args.from_ts is not None or args.to_ts is not None:
        raise ConfigError("replay --from-archive: replays the whole archive; drop events|dedup and --from-ts/--to-ts")
    location = open_location(args.from_archive, **parse_storage_options(args.storage_option))
    if not archive_partitions(location):
        raise ConfigError(f"replay --from-archive: no raw archive files under {args.from_archive} (raw/gatherer=*/)")
    migrate(config.postgres.dsn, config.postgres)
    stats = replay_archive(location, config.postgres.dsn, group_id=f"{config.sink.group_id}-archive-replay")
    print(
        json.dumps(
            {
                "frames": stats.frames,
                "events": stats.events,
                "duplicates": stats.duplicates,
                "gaps": stats.gaps,
                "dead": stats.dead,
                "rows": stats.rows,
                "absorbed": stats.absorbed,
                "markets": stats.markets,
                "seconds": round(stats.seconds, 2),
            }
        )
    )
    return 0
