"""Repo snapshots: the task's repo at its start commit, with no later history, cached on the host.

A snapshot is a plain git repo whose HEAD is the start commit and which holds only
objects reachable from it, so no future commit (the answer) can leak into a sandbox.
It is built once per (source, start commit) and shared by every trial; sandboxes copy it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from oneshot_shared.paths import cache_dir as default_cache_dir
from pytest_oneshot.errors import InfraError, RepoUnavailableError
from pytest_oneshot.task import Task

FETCH_TIMEOUT_SEC = 300.0
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",  # an auth prompt would hang a headless run
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "oneshot",
    "GIT_AUTHOR_EMAIL": "oneshot@localhost",
    "GIT_COMMITTER_NAME": "oneshot",
    "GIT_COMMITTER_EMAIL": "oneshot@localhost",
}


def git(
    *args: str, cwd: Path | None = None, timeout: float = FETCH_TIMEOUT_SEC, env: Mapping[str, str] | None = None
) -> str:
    """Run host git (with ``env`` on top of ours); raise RuntimeError carrying git's last stderr line on failure."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**os.environ, **_GIT_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout.strip()


@cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    """sha256 of a bundle, computed once per process per version of the file."""
    del mtime_ns, size  # part of the cache key only
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _source_key(task: Task) -> str:
    spec = task.spec.repo
    origin = spec.git_url
    if task.bundle_path is not None:
        stat = task.bundle_path.stat()
        origin = _file_digest(task.bundle_path.resolve(), stat.st_mtime_ns, stat.st_size)
    blob = "\0".join([origin, spec.start_commit_sha, spec.branch, ",".join(spec.sparse_checkout)])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _fetch_into(task: Task, scratch: Path, dest: Path) -> None:
    """Fetch exactly the start commit (and its ancestors) from the task's source into ``dest``."""
    spec = task.spec.repo
    allow_sha = "uploadpack.allowAnySHA1InWant=true"
    if task.bundle_path is not None:
        # Bundles only serve refs: unpack into scratch, then fetch the one commit from there.
        git("init", "-q", str(scratch))
        git("fetch", "-q", "--no-tags", str(task.bundle_path.resolve()), "+refs/*:refs/bundle/*", cwd=scratch)
        source = str(scratch)
    elif spec.git_url:
        source = spec.git_url
        local = Path(spec.git_url).expanduser()
        if local.exists():
            source = str(local.resolve())
        elif _is_local_path(spec.git_url):  # else git's last words are "...and the repository exists."
            raise RepoUnavailableError(f"repo.git_url {spec.git_url}: local path does not exist")
    else:
        raise RepoUnavailableError("the task has neither repo.bundle nor repo.git_url")
    try:
        start = spec.start_commit_sha
        if source == str(scratch):
            start = git("rev-parse", "--verify", f"{start}^{{commit}}", cwd=scratch)
        git("-c", allow_sha, "fetch", "-q", "--no-tags", source, start, cwd=dest)
    except RuntimeError as exc:
        where = task.spec.repo.bundle or spec.git_url
        raise RepoUnavailableError(f"{where} at {spec.start_commit_sha[:12]}: {exc}") from None


def _is_local_path(url: str) -> bool:
    """git's rule: a URL has ``://``, ``host:path`` is ssh (a colon before any slash), the rest is a path."""
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon == -1 or (slash != -1 and slash < colon)


def snapshot(task: Task, cache_dir: Path | None = None) -> Path:
    """Return a cached snapshot repo for ``task`` (HEAD = start commit), building it if needed.

    Raises:
        RepoUnavailableError: the source cannot be reached or lacks the start commit.
        InfraError: git refused to build the snapshot (e.g. a branch name it rejects).
    """
    root = (cache_dir or default_cache_dir()) / "repos"
    final = root / _source_key(task)
    if (final / ".git").is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        dest = work / "repo"
        try:
            git("init", "-q", "-b", task.spec.repo.branch or "main", str(dest))
            _fetch_into(task, work / "scratch", dest)
            git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=dest)
            git("checkout", "-q", "-B", task.spec.repo.branch or "main", cwd=dest)
            if task.spec.repo.sparse_checkout:
                git("sparse-checkout", "set", "--no-cone", *task.spec.repo.sparse_checkout, cwd=dest)
        except RuntimeError as exc:  # git refused e.g. the branch or sparse patterns: the item's error, no crash
            raise InfraError("prepare", f"{task.paths.meta}: could not build the repo snapshot: {exc}") from None
        try:
            os.rename(dest, final)  # atomic publish; a concurrent builder may have won
        except OSError:
            if not (final / ".git").is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
