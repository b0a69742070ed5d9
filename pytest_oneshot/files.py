"""Files: written so a reader never sees half of one (run dirs, reports, traces), and their digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cache
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_digest(path: Path) -> str:
    """sha256 of a file's content, computed once per process per version of the file (bundles are large)."""
    stat = path.stat()
    return _digest(path.resolve(), stat.st_mtime_ns, stat.st_size)


@cache
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key only
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
