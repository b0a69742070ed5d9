"""The user's repository, read and snapshotted with git plumbing only.

Capture must never change what the user sees: no commit on their branch, no staged file, no
touched working-tree file. A snapshot is therefore built through a *temporary index*
(``GIT_INDEX_FILE``): the worktree's files, dirty and untracked ones included (ignored ones
excluded), are hashed into a tree, wrapped in a commit whose parent is HEAD, and kept on a private
ref (``refs/oneshot/<slug>/start|end``). Paths come from ``git rev-parse``, so a subdirectory or a
linked worktree works like the top level.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from oneshot_shared.errors import OneshotError

GIT_TIMEOUT_SEC: Final = 300.0
_PLAIN_ENV: Final = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_SNAPSHOT_IDENTITY: Final = {
    "GIT_AUTHOR_NAME": "oneshot capture",
    "GIT_AUTHOR_EMAIL": "oneshot@localhost",
    "GIT_COMMITTER_NAME": "oneshot capture",
    "GIT_COMMITTER_EMAIL": "oneshot@localhost",
}
"""Snapshot commits live on private refs only; a fixed identity keeps them independent of the user's."""


class CaptureError(OneshotError):
    """A capture tool cannot do what was asked; the message says what to do instead."""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    return {**env, **_PLAIN_ENV, **(extra or {})}


def run_git(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True, binary_out: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """Run git in ``cwd`` with the caller's ``GIT_*`` variables dropped (codex or a hook may set them).

    Raises:
        CaptureError: git failed (with its last stderr line) when ``check``.
    """
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_env(env),
            capture_output=True,
            timeout=GIT_TIMEOUT_SEC,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise CaptureError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise CaptureError(f"git {args[0]} timed out after {GIT_TIMEOUT_SEC:.0f}s in {cwd}") from None
    if check and proc.returncode != 0:
        lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise CaptureError(f"git {' '.join(args[:2])} failed in {cwd}: {lines[-1] if lines else proc.returncode}")
    return proc


@dataclass(frozen=True)
class GitRepo:
    """One working tree of a repository: where its files, its own git dir and the shared git dir are."""

    toplevel: Path
    git_dir: Path
    """This worktree's git dir (``.git``, or ``.git/worktrees/<name>``): per-worktree state lives here."""
    common_dir: Path
    """The repository's shared git dir (objects and refs)."""

    @classmethod
    def discover(cls, cwd: Path) -> GitRepo:
        """The repository ``cwd`` is in.

        Raises:
            CaptureError: ``cwd`` is not inside a git working tree.
        """
        if not cwd.is_dir():
            raise CaptureError(f"{cwd}: no such directory; start the MCP server from inside the repository")
        proc = run_git("rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir", cwd=cwd, check=False)
        lines = proc.stdout.decode().splitlines()
        if proc.returncode != 0 or len(lines) != 3:
            raise CaptureError(
                f"{cwd} is not inside a git working tree; run `git init` there (or start the server in a repo)"
            )
        toplevel, git_dir, common = (Path(line) for line in lines)
        return cls(toplevel, git_dir, (cwd / common).resolve() if not common.is_absolute() else common)

    def git(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        return run_git(*args, cwd=self.toplevel, env=env, check=check).stdout.decode(errors="replace").strip()

    def git_bytes(self, *args: str) -> bytes:
        return run_git(*args, cwd=self.toplevel).stdout

    def head(self) -> str | None:
        """HEAD's commit, or None in a repository without commits."""
        sha = self.git("rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
        return sha or None

    def branch(self) -> str:
        return self.git("symbolic-ref", "--short", "-q", "HEAD", check=False)

    def remote_urls(self) -> list[str]:
        lines = self.git("config", "--get-regexp", r"^remote\..*\.url$", check=False).splitlines()
        return list(dict.fromkeys(line.split(" ", 1)[1] for line in lines if " " in line))

    def config(self, key: str) -> str:
        return self.git("config", "--get", key, check=False)

    def snapshot(self, ref: str, message: str, parent: str | None, exclude: list[str] | None = None) -> str:
        """Commit the working tree as it is (dirty, untracked, deletions) on ``ref``; return the sha.

        The user's index is copied, never written: git updates the copy's stat cache, not theirs.
        ``exclude``: repo-relative paths left out (as they are in ``parent``).
        """
        with tempfile.TemporaryDirectory(prefix="oneshot-index-") as scratch:
            index = Path(scratch) / "index"
            user_index = self.git_dir / "index"
            if user_index.is_file():
                shutil.copyfile(user_index, index)
            env = {"GIT_INDEX_FILE": str(index)}
            if not user_index.is_file() and parent:
                self.git("read-tree", parent, env=env)
            self.git("add", "-A", "--", ".", *(f":(exclude){path}" for path in exclude or []), env=env)
            tree = self.git("write-tree", env=env)
        parents = ["-p", parent] if parent else []
        sha = self.git("commit-tree", tree, *parents, "-m", message, env=_SNAPSHOT_IDENTITY)
        self.git("update-ref", ref, sha)
        return sha

    def ref_sha(self, ref: str) -> str | None:
        return self.git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False) or None

    def export(self, sha: str, dest: Path) -> Path:
        """The tree of ``sha`` as plain files in ``dest`` (``git archive``: no worktree bookkeeping in the repo)."""
        dest.mkdir(parents=True, exist_ok=True)
        archive = run_git("archive", "--format=tar", sha, cwd=self.toplevel).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=GIT_TIMEOUT_SEC)
        return dest
