"""Times given on the command line: ISO 8601 (UTC unless it says otherwise) or epoch milliseconds, as epoch ms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["parse_epoch_ms"]


def parse_epoch_ms(text: str) -> int:
    """``text`` as milliseconds since the epoch; ``ValueError`` naming both accepted forms otherwise."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 nor milliseconds since the epoch") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
