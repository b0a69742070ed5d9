"""CPU and memory limits for host processes, as a cgroup v1 group (the docker engine's cgroup driver here).

The scoring tree (:mod:`docker_tree`) runs the tests as host processes; they keep the task's limits
by joining a group made for their sandbox. Only cgroup v1 with writable ``cpu`` and ``memory``
hierarchies is supported: elsewhere :meth:`Limits.create` returns None and the caller scores in a
container, which the engine limits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup")
_GROUP = "oneshot"
_LEAVE_SEC = 2.0
"""How long :meth:`Limits.remove` waits for killed processes to leave their groups."""
_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """One sandbox's group in the ``cpu`` and ``memory`` hierarchies; its processes join by pid."""

    cpu: Path
    memory: Path

    @classmethod
    def create(cls, cpus: float, memory_mb: int, root: Path = V1_ROOT) -> Limits | None:
        """A new group limited to ``cpus`` CPUs and ``memory_mb`` MiB (swap included), or None when
        this host cannot make one."""
        parents = (root / "cpu" / _GROUP, root / "memory" / _GROUP)
        if not all(os.access(parent.parent / "tasks", os.W_OK) for parent in parents):
            return None
        name = f"{os.getpid()}-{secrets.token_hex(6)}"  # the pid tells a dead run's groups (remove_stale)
        limits = cls(parents[0] / name, parents[1] / name)
        try:
            for group in (limits.cpu, limits.memory):
                group.mkdir(parents=True)
            (limits.cpu / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
            (limits.cpu / "cpu.cfs_quota_us").write_text(str(round(cpus * _PERIOD_US)))
            limit = str(memory_mb * 1024 * 1024)
            (limits.memory / "memory.limit_in_bytes").write_text(limit)
            swap = limits.memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # with swap accounting: no swapping past the limit, as docker's memswap
                swap.write_text(limit)
        except OSError:
            limits.remove()
            return None
        return limits

    @property
    def procs(self) -> tuple[Path, Path]:
        """Files a process writes its pid to, to join (its children follow)."""
        return (self.cpu / "cgroup.procs", self.memory / "cgroup.procs")

    def remove(self) -> None:
        """Remove the groups once their processes are gone: processes just SIGKILLed take a moment to
        leave (rmdir says EBUSY meanwhile); a group still busy after that stays, for a later session."""
        deadline = time.monotonic() + _LEAVE_SEC
        for group in (self.cpu, self.memory):
            while not _removed(group) and time.monotonic() < deadline:
                time.sleep(0.02)


def _removed(group: Path) -> bool:
    try:
        group.rmdir()
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY: processes still in it
        return False
    return True


def remove_stale(root: Path = V1_ROOT) -> list[str]:
    """Remove the empty groups of processes that are gone (a SIGKILLed run never removes its own)."""
    removed = []
    for hierarchy in ("cpu", "memory"):
        parent = root / hierarchy / _GROUP
        for group in parent.glob("*-*") if parent.is_dir() else ():
            pid = group.name.partition("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    group.rmdir()
                    removed.append(str(group))
    return removed
