"""Where an archive lives: a local path or an fsspec URL (``s3://bucket/prefix``, ``file:///...``, ``memory://``).

Files are written under a temporary name and renamed into place, so a reader (or a resumed ``archive raw``) never
sees half a file: a name that ends in ``.parquet`` is complete. On object storage the rename is a copy and a delete;
a crash between the two leaves a ``.tmp`` object that every reader ignores.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable
from typing import IO, Any

__all__ = ["Location", "open_location"]


class Location:
    """A directory of an fsspec filesystem: ``fs`` and the root ``path`` inside it."""

    def __init__(self, fs: Any, root: str, url: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.url = url

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def write_atomic(self, relative: str, write: Callable[[IO[bytes]], None]) -> str:
        """Write ``relative`` through ``write(file)`` under a temporary name, then rename it into place."""
        final = self.path(relative)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = f"{final}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open(tmp, "wb") as out:
                write(out)
            self.fs.mv(tmp, final)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return final

    def files(self, relative: str = "", suffix: str = ".parquet") -> list[str]:
        """Every complete file under ``relative`` whose name ends with ``suffix``, sorted."""
        base = self.path(relative) if relative else self.root
        self.fs.invalidate_cache()  # object stores cache listings (s3fs kept a prefix "empty" after writes below it)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        return sorted(p for p in found if p.endswith(suffix))

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)


def open_location(url: str, **storage_options: Any) -> Location:
    """The :class:`Location` of a local path or an fsspec URL (created when missing, for local paths)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    if fs.protocol in ("file", ("file", "local")) or "file" in (fs.protocol if isinstance(fs.protocol, tuple) else ()):
        fs.makedirs(root, exist_ok=True)
    return Location(fs, root, url)
