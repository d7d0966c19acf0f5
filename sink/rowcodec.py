"""Which row builder the sink runs: the C accelerator ``sink._rowcodec`` or the pure-Python :mod:`sink.rows`.

``sink.row_codec`` chooses: ``auto`` (the default) runs the C builder when the install compiled it and the Python
one otherwise, ``c`` requires the C builder (start-up fails naming the setting when it is missing) and
``python`` never uses it. The C builder handles the common record shapes only and hands every other record to
the Python path (see ``sink/_rowcodec.c``), so both produce the same rows, skips and dead letters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

__all__ = ["ACCELERATED", "ROW_LAYOUT", "CodecChoice", "FastBuild", "fast_build", "resolve"]

# build(payloads, start, rows, version, from_ms, to_ms, stamps) -> (stop, skipped)
FastBuild = Callable[[list[bytes], int, dict[str, list[bytes]], int, Any, Any, Any], tuple[int, int]]
CodecChoice = Literal["auto", "c", "python"]

try:
    from sink import _rowcodec  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler, or a source checkout never installed
    _rowcodec = None
# The layout of the rows the C builder must write (sink.rows.COLUMNS): 2 = common columns with venue; 3 = deltas with
# the book rule (replaces, ordinal); 4 = the same rows, delta records with ``alias`` (an older build would hand every
# such record to the Python path).
ROW_LAYOUT = 4
if _rowcodec is not None and getattr(_rowcodec, "ROW_LAYOUT", 0) != ROW_LAYOUT:  # built from older sources
    import warnings

    warnings.warn("sink._rowcodec is stale (built before the current row layout): using the Python row builder; "
                  "rebuild it with `make venv`", RuntimeWarning, stacklevel=1)  # fmt: skip
    _rowcodec = None

ACCELERATED = _rowcodec is not None


def fast_build() -> FastBuild | None:
    """The C builder's entry point, or None when it was not built."""
    return None if _rowcodec is None else _rowcodec.build


def resolve(choice: CodecChoice) -> FastBuild | None:
    """The builder for the ``sink.row_codec`` setting (None = pure Python); ValueError when ``c`` is not built."""
    if choice == "python":
        return None
    if choice == "c" and _rowcodec is None:
        raise ValueError(
            "row_codec: 'c' needs the compiled sink._rowcodec (reinstall with a C compiler: make setup), "
            "or use 'auto' / 'python'"
        )
    return fast_build()
