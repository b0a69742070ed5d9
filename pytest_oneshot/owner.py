"""Which process owns a sandbox resource (a container, a temp dir), so a later session can tell litter.

A run killed with SIGKILL cleans nothing up; the next session removes what it left behind, but only
what provably belongs to a dead process: same host, and another boot or no process with that pid and
start time (pid reuse counts as dead).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

_PREFIX = "oneshot.owner."
OWNER_FILE = "oneshot-owner.json"
"""In a directory: its owner, as the same key/value pairs as a container's labels."""


@dataclass(frozen=True)
class Owner:
    """The process a resource belongs to; once it is gone, the resource is litter."""

    host: str
    boot: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), _boot_id(), os.getpid(), _process_start(os.getpid()))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        try:
            return cls(
                labels[f"{_PREFIX}host"],
                labels[f"{_PREFIX}boot"],
                int(labels[f"{_PREFIX}pid"]),
                labels[f"{_PREFIX}started"],
            )
        except (KeyError, ValueError, TypeError):
            return None

    def labels(self) -> dict[str, str]:
        return {
            f"{_PREFIX}host": self.host,
            f"{_PREFIX}boot": self.boot,
            f"{_PREFIX}pid": str(self.pid),
            f"{_PREFIX}started": self.started,
        }

    def is_dead(self) -> bool:
        """True only when we can tell: same host, and another boot or no such process (pid reuse counts)."""
        if self.host != socket.gethostname():
            return False
        return self.boot != _boot_id() or _process_start(self.pid) != self.started

    @classmethod
    def claim(cls, directory: Path) -> None:
        """Record the current process as ``directory``'s owner."""
        (directory / OWNER_FILE).write_text(json.dumps(cls.current().labels()), encoding="utf-8")

    @classmethod
    def of(cls, directory: Path) -> Owner | None:
        """``directory``'s recorded owner; None when there is none (not ours, or still being set up)."""
        try:
            labels = json.loads((directory / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls.from_labels(labels) if isinstance(labels, dict) else None


def remove_dead_dirs(parent: Path, prefix: str, before: Callable[[Path], None] | None = None) -> list[str]:
    """Remove the directories in ``parent`` named ``prefix*`` whose recorded owner is dead; return them.

    ``before``: called on each first (to stop what still runs there)."""
    removed = []
    for directory in parent.glob(f"{prefix}*"):
        if directory.is_symlink() or not directory.is_dir() or directory.stat().st_uid != os.getuid():
            continue
        owner = Owner.of(directory)
        if owner is not None and owner.is_dead():
            if before is not None:
                before(directory)
            remove_dir(directory)
            removed.append(str(directory))
    return removed


def remove_dir(directory: Path) -> None:
    """``shutil.rmtree(directory, ignore_errors=True)`` for a tree of any depth: a sandbox's code can
    nest dirs deeper than Python's recursion limit, where rmtree raises RecursionError (rm does not)."""
    try:
        shutil.rmtree(directory, ignore_errors=True)
    except RecursionError:
        subprocess.run(["rm", "-rf", "--", str(directory)], capture_output=True, check=False, start_new_session=True)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]
