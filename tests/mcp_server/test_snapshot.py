"""Snapshots see every edit, including ones git's stat cache alone would miss."""

from __future__ import annotations

import time
from pathlib import Path

from mcp_server.gitrepo import GitRepo
from tests.mcp_server.conftest import git


def test_a_same_size_edit_in_the_commits_second_is_in_the_snapshot(tmp_path: Path) -> None:
    """Racy git: the edit keeps size, inode and mtime second of the committed file; only the index's own
    mtime tells git to look at the content. A snapshot taken in a later second must still see the edit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    time.sleep(1.02 - time.time() % 1)  # the commit and the edit in one second, with time to spare
    (repo / "calc.py").write_text("a - b\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=U", "-c", "user.email=u@example.com", "commit", "-qm", "calc")
    (repo / "calc.py").write_text("a + b\n")
    time.sleep(1.02 - time.time() % 1)  # the snapshot in the next second

    sha = GitRepo.discover(repo).snapshot("refs/oneshot/t/end", "end", parent=None)

    assert git(repo, "show", f"{sha}:calc.py") == "a + b"
    assert git(repo, "status", "--porcelain") == "M calc.py", "the user's index is untouched"
