"""The agent's change, as the harness itself sees it: two file trees compared, no ``.git`` asked.

A sandbox streams its workspace as a tar archive (:meth:`Sandbox.archive_workspace`); this
module reads it into a :data:`Manifest` (path -> kind, executable bit, sha256) and compares the
agent's tree with a fresh one. Nothing the agent controls in git (ignore and exclude files,
index flags, refs, config, attributes, filters) can hide a file from this comparison, and
nothing it wrote is executed to make it. What is never part of a repository's files is left
out on reading: any ``.git`` directory, Python bytecode and tool caches (``.pytest_cache``,
``*.egg-info``, ``.venv``...); new files the start commit's own ``.gitignore`` rules ignore are
left out of the change, as git would (the agent's ignore rules are never read). A file over the size caps, or one
that is not a regular file or symlink, is left out of the change and named in
:attr:`Change.left_out`: that is the agent's problem, never the harness's.

:func:`render_patch` writes the change as a binary-safe git diff from a private, bare scratch
repository (no user or repo config, no attributes, no filters), for the run dir only: scoring
uses the files, not the patch.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal

MAX_FILE_BYTES = 10 * 1024 * 1024
"""Default cap per changed file: bigger files are left out of the change (and named)."""
MAX_CHANGE_BYTES = 100 * 1024 * 1024
"""Default cap on the bytes of all changed files together."""
READ_TIMEOUT_SEC = 300.0
"""How long reading a workspace archive may take (a 1 TiB file streamed byte by byte would never end)."""


class UnreadableWorkspace(Exception):
    """The agent's workspace cannot be read into a change (a malformed or endless archive): the
    agent did that to its own sandbox, so the item fails; it is never a harness error."""


_CHUNK = 1024 * 1024
MAX_PATH_CHARS = 1024
_BYTECODE_SUFFIXES = (".pyc", ".pyo")
_TOOL_CACHES = {
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".tox",
    ".nox",
    ".venv",
}


@dataclass(frozen=True)
class Entry:
    """One file of a tree. ``data`` is kept only for files that are part of a change."""

    kind: Literal["file", "symlink"]
    digest: str
    executable: bool = False
    target: str = ""
    """A symlink's target."""
    data: bytes | None = None

    @property
    def git_mode(self) -> str:
        return "120000" if self.kind == "symlink" else "100755" if self.executable else "100644"

    def blob(self) -> bytes:
        """The bytes git stores for this entry (a symlink's target)."""
        if self.kind == "symlink":
            return self.target.encode("utf-8", "surrogateescape")
        assert self.data is not None, "file content was not kept"
        return self.data

    def same_as(self, other: Entry | None) -> bool:
        return other is not None and (self.kind, self.digest, self.executable) == (
            other.kind,
            other.digest,
            other.executable,
        )


Manifest = dict[str, Entry]


@dataclass
class Tree:
    """A workspace as read from its archive: its files, and what could not be part of a change."""

    files: Manifest = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    """path -> why it was not read (too big, not a regular file...)."""


@dataclass(frozen=True)
class Change:
    """What the agent changed relative to a fresh workspace: new or modified files, and deletions."""

    files: Mapping[str, Entry]
    """Added or modified paths with their new content (repo-relative, POSIX)."""
    deleted: tuple[str, ...]
    left_out: Mapping[str, str]
    """Paths the agent touched that are not part of the change, and why."""

    @property
    def paths(self) -> list[str]:
        return sorted([*self.files, *self.deleted])


def _ignored(path: str) -> bool:
    """Never a repository file: git's own directory anywhere, Python bytecode, tool caches."""
    parts = PurePosixPath(path).parts
    return any(part in _TOOL_CACHES or part.endswith(".egg-info") for part in parts) or path.endswith(
        _BYTECODE_SUFFIXES
    )


def _member_path(name: str, prefix: str) -> str | None:
    """Repo-relative POSIX path of an archive member, or None for the root itself / anything odd."""
    if not name.startswith(prefix):
        return None
    relative = PurePosixPath(name[len(prefix) :])
    if not relative.parts or relative.is_absolute() or ".." in relative.parts:
        return None
    return relative.as_posix()


def _within(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise UnreadableWorkspace(f"reading it took over {READ_TIMEOUT_SEC:.0f}s")


def _digest_file(stream: IO[bytes], size: int, keep: bool, deadline: float) -> tuple[str, bytes | None]:
    digest, chunks, remaining = hashlib.sha256(), [], size
    while remaining > 0:
        _within(deadline)
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        digest.update(chunk)
        if keep:
            chunks.append(chunk)
    return digest.hexdigest(), b"".join(chunks) if keep else None


def _link_digest(target: str) -> str:
    return hashlib.sha256(b"link:" + target.encode("utf-8", "surrogateescape")).hexdigest()


def read_archive(
    archive: IO[bytes],
    *,
    baseline: Manifest | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_change_bytes: int = MAX_CHANGE_BYTES,
    timeout: float = READ_TIMEOUT_SEC,
) -> Tree:
    """Read a workspace archive (its first member is the workspace directory itself).

    With ``baseline``, the content of every file that differs from it is kept (up to the caps,
    beyond which the file is left out), so a change can be made from the result; without it only
    digests are kept. The archive is streamed: a huge file costs time, never memory.

    Raises:
        UnreadableWorkspace: the archive is malformed, or reading it takes longer than ``timeout``.
    """
    try:
        return _read(archive, baseline, max_file_bytes, max_change_bytes, time.monotonic() + timeout)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnreadableWorkspace(f"its archive is unreadable ({exc})") from None


def _printable(path: str) -> str | None:
    """None for a UTF-8 name, else the name with its undecodable bytes shown as escapes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


def _read(
    archive: IO[bytes], baseline: Manifest | None, max_file_bytes: int, max_change_bytes: int, deadline: float
) -> Tree:
    tree = Tree()
    kept_bytes = 0
    prefix: str | None = None
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            _within(deadline)
            if prefix is None:
                prefix = member.name.rstrip("/") + "/" if member.isdir() else ""
                if member.isdir():
                    continue
            path = _member_path(member.name, prefix)
            if path is None or _ignored(path) or member.isdir():
                continue
            printable = _printable(path)
            if printable is not None or len(path) > MAX_PATH_CHARS:
                tree.left_out[printable or path[:200] + "..."] = "a file name that is not UTF-8, or too long"
                continue
            old = baseline.get(path) if baseline is not None else None
            if member.issym():
                entry = Entry("symlink", _link_digest(member.linkname), target=member.linkname)
            elif member.islnk():  # same content as a file read earlier
                source = _member_path(member.linkname, prefix)
                entry_or_none = tree.files.get(source) if source else None
                if entry_or_none is None or not (entry_or_none.same_as(old) or entry_or_none.data is not None):
                    tree.left_out[path] = "a hard link to a file whose content the harness did not keep"
                    continue
                entry = entry_or_none
            elif member.isreg():
                changed = baseline is not None
                if member.size > max_file_bytes:
                    tree.left_out[path] = f"{member.size} bytes, over the {max_file_bytes}-byte cap per file"
                    continue
                executable = bool(member.mode & 0o111)
                digest, data = _digest_file(tar.extractfile(member) or io.BytesIO(), member.size, changed, deadline)
                entry = Entry("file", digest, executable, data=data)
                if changed and entry.same_as(old):
                    entry = Entry("file", digest, executable)  # unchanged: drop the content
                elif changed:
                    if kept_bytes + member.size > max_change_bytes:
                        tree.left_out[path] = f"the change is over its {max_change_bytes}-byte cap"
                        continue
                    kept_bytes += member.size
            else:
                tree.left_out[path] = "not a regular file or symlink"
                continue
            tree.files[path] = entry
    return tree


def compute_change(baseline: Manifest, agent: Tree, snapshot: Path | None = None) -> Change:
    """The agent's tree minus the fresh one: changed/added files with content, and deletions.

    New files that ``snapshot``'s (the start commit's) ignore rules ignore are not part of it.
    """
    files = {path: entry for path, entry in agent.files.items() if not entry.same_as(baseline.get(path))}
    if snapshot is not None:
        for path in ignored_by_start(snapshot, [path for path in files if path not in baseline]):
            del files[path]
    deleted = tuple(sorted(path for path in baseline if path not in agent.files and path not in agent.left_out))
    return Change(files=dict(sorted(files.items())), deleted=deleted, left_out=dict(sorted(agent.left_out.items())))


_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def _git_env(home: Path) -> dict[str, str]:
    """A git environment without any user or system config, excludes or attributes."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **_GIT_ENV}


def _git(scratch: Path, *args: str, stdin: bytes = b"", index: str | None = None) -> bytes:
    env = {**_git_env(scratch), "GIT_DIR": str(scratch / "repo.git")}
    if index:
        env["GIT_INDEX_FILE"] = str(scratch / index)
    argv = ["git", *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False, start_new_session=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    return proc.stdout


def ignored_by_start(snapshot: Path, paths: list[str]) -> set[str]:
    """Which of ``paths`` the start commit's ``.gitignore`` files ignore (no user or system excludes)."""
    if not paths:
        return set()
    listed = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in paths)
    proc = subprocess.run(
        ["git", "-c", "core.excludesFile=", "check-ignore", "-z", "--stdin"],
        input=listed, capture_output=True, env=_git_env(snapshot / ".git"), cwd=snapshot, check=False,
        start_new_session=True,  # like every helper of a trial: a terminal's Ctrl-C is the session's to handle
    )  # fmt: skip
    if proc.returncode not in (0, 1):  # 1: none of them is ignored; anything else must not read as "none"
        raise RuntimeError(f"git check-ignore: {proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    return {name.decode("utf-8", "surrogateescape") for name in proc.stdout.split(b"\0") if name}


def _tree(scratch: Path, name: str, entries: Iterable[tuple[str, Entry]]) -> str:
    """Write ``entries`` as a git tree in the scratch repo (blobs hashed without any filter)."""
    listed = list(entries)
    blobs = scratch / f"{name}.blobs"
    blobs.mkdir()
    for number, (_, entry) in enumerate(listed):
        (blobs / str(number)).write_bytes(entry.blob())
    names = "".join(f"{blobs / str(number)}\n" for number in range(len(listed))).encode()
    shas = _git(scratch, "hash-object", "-w", "--no-filters", "--stdin-paths", stdin=names).decode().split()
    lines = [
        f"{entry.git_mode} {sha}\t".encode() + path.encode("utf-8", "surrogateescape")
        for (path, entry), sha in zip(listed, shas, strict=True)
    ]
    _git(scratch, "update-index", "-z", "--index-info", stdin=b"".join(line + b"\0" for line in lines), index=name)
    return _git(scratch, "write-tree", index=name).decode().strip()


def render_patch(change: Change, old: Mapping[str, Entry]) -> bytes:
    """The change as ``git diff --binary`` output; ``old`` holds the fresh side of every changed path."""
    paths = change.paths
    if not paths:
        return b""
    with tempfile.TemporaryDirectory(prefix="oneshot-patch-") as tmp:
        scratch = Path(tmp)
        _git(scratch, "init", "-q", "--bare", str(scratch / "repo.git"))
        before = _tree(scratch, "old.index", ((path, old[path]) for path in paths if path in old))
        after = _tree(scratch, "new.index", change.files.items())
        return _git(
            scratch,
            "diff-tree", "-r", "-p", "--binary", "--full-index", "--no-renames", "--no-ext-diff", "--no-textconv",
            "--no-color", before, after,
        )  # fmt: skip
