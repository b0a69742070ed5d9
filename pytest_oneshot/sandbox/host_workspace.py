"""A sandbox workspace that is a host directory (the local sandbox's, the docker scoring tree's).

Its files are read and written from the host, so a path is checked on the host side: a symlink or a
file planted on the way is never followed out of the workspace.
"""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from pytest_oneshot.sandbox.archive import archive_from_command


class HostWorkspace:
    """The repo at ``root`` on the host; sandbox paths are relative to ``workdir`` (the repo or its subdir)."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir

    def _target(self, path: str) -> Path:
        """Host path for a workdir-relative path; whatever is in the way (a symlink, a file where a
        directory must be) is removed, so nothing leads out of the workspace."""
        relative = _relative(path)
        current = self.workdir
        for index, part in enumerate(relative.parts):
            current = current / part
            last = index == len(relative.parts) - 1
            if current.is_symlink() or (not last and current.exists() and not current.is_dir()):
                current.unlink()  # the agent planted it; never follow it out of the workspace
        return current

    def write_file(self, path: str, data: bytes) -> None:
        target = self._target(path)
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # a new file: the agent's file modes and hard links stay behind
        target.write_bytes(data)

    def read_file(self, path: str) -> bytes:
        target = self.workdir / _relative(path)
        if target.is_symlink() or not target.resolve().is_relative_to(self.root.resolve()):
            raise PermissionError(f"{path}: is a symlink or resolves outside the workspace")
        try:
            return target.read_bytes()
        except NotADirectoryError:  # a file where a parent directory should be: no such file either
            raise FileNotFoundError(f"{path}: no such file in the sandbox") from None

    def archive(self) -> AbstractContextManager[IO[bytes]]:
        """The repo as a tar, its .git left out; what tar cannot read is not in it."""
        argv = ["tar", "-C", str(self.root), "--exclude=.git", "--sparse", "-cf", "-", "."]
        return archive_from_command(argv, "the sandbox", check=False)


def _relative(path: str) -> Path:
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise PermissionError(f"{path}: sandbox paths must be relative to the workdir")
    return relative
