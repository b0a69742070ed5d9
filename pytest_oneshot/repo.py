"""Repo snapshots: the task's repo at its start commit, with no later history, cached on the host.

A snapshot is a plain git repo whose HEAD is the start commit and which holds only
objects reachable from it, so no future commit (the answer) can leak into a sandbox.
It is built once per (source, start commit) and shared by every trial; sandboxes copy it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from oneshot_shared.paths import cache_dir as default_cache_dir
from pytest_oneshot.errors import InfraError, RepoUnavailableError
from pytest_oneshot.files import file_digest
from pytest_oneshot.task import Task, TaskOverrides

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
            start_new_session=True,  # a terminal's Ctrl-C is the session's to handle, not a failed clone's
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout.strip()


def _source_key(task: Task) -> str:
    spec = task.spec.repo
    origin = spec.git_url
    if task.bundle_path is not None:
        origin = file_digest(task.bundle_path)
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

    With overrides that edit the repo, HEAD is a commit on top of the start commit holding the edits
    (both sandboxes start from it, so the edits are part of the task, not of the agent's change).

    Raises:
        RepoUnavailableError: the source cannot be reached or lacks the start commit.
        InfraError: git refused to build the snapshot (e.g. a branch name it rejects).
    """
    root = (cache_dir or default_cache_dir()) / "repos"
    key = _source_key(task)
    base = _build(root / key, lambda dest, work: _fetch_snapshot(task, dest, work))
    edits = task.overrides
    if edits is None or not edits.edits_repo:
        return base
    return _build(root / f"{key}-{edits.digest()[:16]}", lambda dest, work: _edit_snapshot(task, base, edits, dest))


def _build(final: Path, build: Callable[[Path, Path], None]) -> Path:
    """Build a snapshot at ``final`` once: in a scratch dir, then published by an atomic rename."""
    if (final / ".git").is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        dest = work / "repo"
        build(dest, work)
        try:
            os.rename(dest, final)  # atomic publish; a concurrent builder may have won
        except OSError:
            if not (final / ".git").is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _fetch_snapshot(task: Task, dest: Path, work: Path) -> None:
    try:
        git("init", "-q", "-b", task.spec.repo.branch or "main", str(dest))
        _fetch_into(task, work / "scratch", dest)
        git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=dest)
        git("checkout", "-q", "-B", task.spec.repo.branch or "main", cwd=dest)
        if task.spec.repo.sparse_checkout:
            git("sparse-checkout", "set", "--no-cone", *task.spec.repo.sparse_checkout, cwd=dest)
    except RuntimeError as exc:  # git refused e.g. the branch or sparse patterns: the item's error, no crash
        raise InfraError("prepare", f"{task.paths.meta}: could not build the repo snapshot: {exc}") from None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A repo-path glob: ``*`` and ``?`` stay within a directory, ``**`` crosses them, ``[...]`` is a set."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[" and "]" in pattern[index + 2 :]:
            end = pattern.index("]", index + 2)
            body = pattern[index + 1 : end]
            out, index = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def _removed(paths: list[str], patterns: tuple[str, ...]) -> list[str]:
    """Tracked paths matched by a pattern themselves or through a parent directory (``docs`` removes docs/**)."""
    regexes = [glob_regex(pattern) for pattern in patterns]

    def matches(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        return any(regex.fullmatch(prefix) for regex in regexes for prefix in prefixes)

    return [path for path in paths if matches(path)]


def _edit_snapshot(task: Task, base: Path, edits: TaskOverrides, dest: Path) -> None:
    """``base`` plus one commit with the overrides' removals and files (through the index: no checkout
    of the agent's kind, no hooks)."""
    try:
        git("clone", "-q", "--no-hardlinks", str(base), str(dest))
        git("remote", "remove", "origin", cwd=dest)
        tracked = git("ls-files", "-z", cwd=dest).split("\0")
        removed = _removed([path for path in tracked if path], edits.remove_paths)
        if removed:
            git("--literal-pathspecs", "rm", "-q", "-r", "--cached", "--", *removed, cwd=dest)
        for path, data, executable in edits.repo_files:
            blob = _hash_object(dest, data)
            git(
                "update-index",
                "--add",
                "--cacheinfo",
                f"{'100755' if executable else '100644'},{blob},{path}",
                cwd=dest,
            )
        listing = "\n".join([*(f"- {path}" for path in removed), *(f"+ {path}" for path, _, _ in edits.repo_files)])
        git("-c", "core.hooksPath=/dev/null", "commit", "-q", "--allow-empty", "--no-verify",
            "-m", f"oneshot overrides\n\n{listing}", cwd=dest)  # fmt: skip
        git("reset", "-q", "--hard", "HEAD", cwd=dest)
        git("clean", "-q", "-fdx", cwd=dest)
    except RuntimeError as exc:
        raise InfraError("prepare", f"{task.paths.meta}: could not apply the overrides to the repo: {exc}") from None


def _hash_object(repo: Path, data: bytes) -> str:
    proc = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo,
        input=data,
        capture_output=True,
        check=False,
        start_new_session=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace").strip() or "git hash-object failed")
    return proc.stdout.decode().strip()
