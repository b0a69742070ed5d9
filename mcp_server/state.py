"""Capture state, one file per working tree (``<git dir>/oneshot/state.json``), under a lock.

Per worktree, not per user (the original's single ``~/.oneshot/state.json``): two repositories, or
two worktrees of one, capture at once. The state outlives the task: after ``repo_end_task_v1`` it
keeps the result, so a retried end call returns the same task directory.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_server.gitrepo import CaptureError, GitRepo

STATE_FORMAT = "oneshot-capture-state/1"


def _dir(repo: GitRepo) -> Path:
    return repo.git_dir / "oneshot"


@contextmanager
def locked(repo: GitRepo) -> Iterator[None]:
    """Serialise start/end calls on one worktree (a retry racing the first call waits for it)."""
    _dir(repo).mkdir(parents=True, exist_ok=True)
    with open(_dir(repo) / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load(repo: GitRepo) -> dict[str, Any] | None:
    path = _dir(repo) / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CaptureError(f"{path}: unreadable capture state ({exc}); delete it and call repo_start_task_v1") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CaptureError(f"{path}: not a capture state file; delete it and call repo_start_task_v1")
    return state


def save(repo: GitRepo, state: dict[str, Any]) -> None:
    path = _dir(repo) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**state, "format": STATE_FORMAT}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
