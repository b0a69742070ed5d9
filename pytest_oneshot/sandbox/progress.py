"""Progress lines and host-wide locks for long sandbox work (engine start, image and venv builds).

Kept apart from :mod:`dockerd` so the plugin and the local sandbox don't import the docker SDK.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

Progress = Callable[[str], None]


_progress_guard: list[Callable[[], AbstractContextManager[object]]] = [contextlib.nullcontext]


def show_progress_through(guard: Callable[[], AbstractContextManager[object]]) -> None:
    """Wrap each progress line in ``guard``: pytest's capture suspension, so builds show progress without -s."""
    _progress_guard[0] = guard


def stderr_progress(line: str) -> None:
    with _progress_guard[0]():
        print(f"oneshot: {line}", file=sys.stderr, flush=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock shared by threads and processes (xdist workers) on this host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
