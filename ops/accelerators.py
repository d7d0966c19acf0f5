"""Which optional C extensions this install runs: the sink's row builder, the partitioner's murmur2, the raw producer's
bundling, a live frame's encoding, the dedup stage's plain later copies and every venue's accelerators
(``Venue.accelerators``). ``python -m ops.accelerators`` prints one line per extension and exits 1, naming the ones
missing, when any was not compiled; an image build runs it because setup.py marks the extensions optional (an install
without a compiler succeeds and runs the pure-Python paths)."""

from __future__ import annotations

import sys

import venues

__all__ = ["accelerators", "main"]


def accelerators() -> dict[str, bool]:
    """Extension module name -> whether it is compiled and in use."""
    from dedup_stream import logic
    from ingest import bundling
    from mdpipe import partitioner
    from schemas import raw_encode
    from sink import rowcodec

    found = {
        "dedup_stream._plaindup": logic.PLAIN_DUPLICATE_C is not None,
        "ingest._bundle": bundling.ACCELERATED,
        "mdpipe._murmur2": partitioner.ACCELERATED,
        "schemas._rawframe": raw_encode.ACCELERATED,
        "sink._rowcodec": rowcodec.ACCELERATED,
    }
    for name in venues.names():
        found.update(venues.get_venue(name).accelerators())
    return found


def main() -> int:
    found = accelerators()
    for module, compiled in sorted(found.items()):
        print(f"accelerator module={module} compiled={str(compiled).lower()}")
    missing = sorted(m for m, compiled in found.items() if not compiled)
    if missing:
        print(f"error: not compiled: {', '.join(missing)} (install a C compiler and reinstall mdpipe)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
