"""The agent's change, as the harness itself sees it: two file trees compared, no ``.git`` asked.

A sandbox streams its workspace as a tar archive (:meth:`Sandbox.archive_workspace`); this
module reads it into a :data:`Manifest` (path -> kind, executable bit, sha256) and compares the
agent's tree with a fresh one. A workspace whose files are on this host
(:class:`~pytest_oneshot.sandbox.HostFiles`) is read from them instead, to the same tree; when it
is an overlay, the agent's tree from the overlay's upper dir alone (what it wrote).
Nothing the agent controls in git (ignore and exclude files,
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

import bisect
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
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


def _ignored_name(name: str) -> bool:
    """A directory that is never a repository's: git's own anywhere, tool caches, build metadata."""
    return name in _TOOL_CACHES or name.endswith(".egg-info")


def _ignored(path: str) -> bool:
    """Never a repository file: git's own directory anywhere, Python bytecode, tool caches."""
    return path.endswith(_BYTECODE_SUFFIXES) or any(_ignored_name(part) for part in path.split("/"))


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


def _printable(path: str) -> str | None:
    """None for a UTF-8 name, else the name with its undecodable bytes shown as escapes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


@dataclass
class _Reading:
    """One read of a tree, from an archive or from this host's files: its caps and what it kept.

    With ``baseline``, the content of every file that differs from it is kept (up to the caps,
    beyond which the file is left out), so a change can be made from the result; without it only
    digests are kept."""

    baseline: Manifest | None
    max_file_bytes: int
    max_change_bytes: int
    deadline: float
    tree: Tree = field(default_factory=Tree)
    kept_bytes: int = 0

    def named(self, path: str) -> bool:
        """Whether ``path`` can be part of a change at all (else it is left out, and said why)."""
        printable = _printable(path)
        if printable is not None or len(path) > MAX_PATH_CHARS:
            self.tree.left_out[printable or path[:200] + "..."] = "a file name that is not UTF-8, or too long"
            return False
        return True

    def add_file(self, path: str, size: int, executable: bool, stream: IO[bytes]) -> None:
        changed = self.baseline is not None
        if size > self.max_file_bytes:
            self.tree.left_out[path] = f"{size} bytes, over the {self.max_file_bytes}-byte cap per file"
            return
        digest, data = _digest_file(stream, size, changed, self.deadline)
        entry = Entry("file", digest, executable, data=data)
        if changed and entry.same_as(self.baseline.get(path) if self.baseline is not None else None):
            entry = Entry("file", digest, executable)  # unchanged: drop the content
        elif changed:
            if self.kept_bytes + size > self.max_change_bytes:
                self.tree.left_out[path] = f"the change is over its {self.max_change_bytes}-byte cap"
                return
            self.kept_bytes += size
        self.tree.files[path] = entry

    def add_symlink(self, path: str, target: str) -> None:
        self.tree.files[path] = Entry("symlink", _link_digest(target), target=target)

    def leave_out(self, path: str) -> None:
        self.tree.left_out[path] = "not a regular file or symlink"

    def leave_out_dir(self, path: str) -> None:
        """A directory too deep to read below (its path is over the cap, or too long for this host)."""
        if self.named(path):
            self.tree.left_out[path] = "a directory nested too deep for its files to be read"


def read_archive(
    archive: IO[bytes],
    *,
    baseline: Manifest | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_change_bytes: int = MAX_CHANGE_BYTES,
    timeout: float = READ_TIMEOUT_SEC,
) -> Tree:
    """Read a workspace archive (its first member is the workspace directory itself), with
    ``baseline`` as :class:`_Reading` says. The archive is streamed: a huge file costs time, never memory.

    Raises:
        UnreadableWorkspace: the archive is malformed, or reading it takes longer than ``timeout``.
    """
    reading = _Reading(baseline, max_file_bytes, max_change_bytes, time.monotonic() + timeout)
    try:
        _read(archive, reading)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnreadableWorkspace(f"its archive is unreadable ({exc})") from None
    return reading.tree


def _read(archive: IO[bytes], reading: _Reading) -> None:
    tree, baseline = reading.tree, reading.baseline
    prefix: str | None = None
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            _within(reading.deadline)
            if prefix is None:
                prefix = member.name.rstrip("/") + "/" if member.isdir() else ""
                if member.isdir():
                    continue
            path = _member_path(member.name, prefix)
            if path is None or _ignored(path) or member.isdir() or not reading.named(path):
                continue
            if member.issym():
                reading.add_symlink(path, member.linkname)
            elif member.islnk():  # same content as a file read earlier
                source = _member_path(member.linkname, prefix)
                entry = tree.files.get(source) if source else None
                old = baseline.get(path) if baseline is not None else None
                if entry is None or not (entry.same_as(old) or entry.data is not None):
                    tree.left_out[path] = "a hard link to a file whose content the harness did not keep"
                    continue
                tree.files[path] = entry
            elif member.isreg():
                stream = tar.extractfile(member) or io.BytesIO()
                reading.add_file(path, member.size, bool(member.mode & 0o111), stream)
            else:
                reading.leave_out(path)


def read_host_dir(
    root: Path,
    *,
    baseline: Manifest | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_change_bytes: int = MAX_CHANGE_BYTES,
    timeout: float = READ_TIMEOUT_SEC,
) -> Tree:
    """The files under ``root`` on this host, read as :func:`read_archive` reads an archive of them
    (with ``baseline`` as :class:`_Reading` says); nothing of the sandbox may run meanwhile.

    Raises:
        UnreadableWorkspace: a file cannot be read, or reading takes longer than ``timeout``.
    """
    reading = _Reading(baseline, max_file_bytes, max_change_bytes, time.monotonic() + timeout)
    _walk(root, reading, upper=False)
    return reading.tree


def read_upper(
    upper: Path,
    baseline: Manifest,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_change_bytes: int = MAX_CHANGE_BYTES,
    timeout: float = READ_TIMEOUT_SEC,
) -> Tree:
    """The tree of an overlay workspace whose fresh files are ``baseline``, from its upper dir alone
    (:class:`~pytest_oneshot.sandbox.HostFiles`): the tree :func:`read_archive` reads from an
    archive of the whole workspace, at the cost of what was written rather than of every file.

    A whiteout (a 0:0 character device) deletes its path, a file or a whole directory; an opaque
    directory hides everything below it in the fresh files; any other entry stands for itself.
    Paths the agent never touched are never "left out", even when the fresh read left them out.

    Raises:
        UnreadableWorkspace: a file cannot be read, or reading takes longer than ``timeout``.
    """
    reading = _Reading(baseline, max_file_bytes, max_change_bytes, time.monotonic() + timeout)
    reading.tree.files.update(baseline)
    _walk(upper, reading, upper=True)
    return reading.tree


_WHITEOUT_DEVICE = 0
_MAX_DIR_BYTES = 4096 - 1 - 255 - 1
"""Longest host path of a dir whose entries can still be named (PATH_MAX less a name, its slash, a NUL)."""
_OPAQUE_XATTR = "trusted.overlay.opaque"


def _walk(root: Path, reading: _Reading, *, upper: bool) -> None:
    """Read the files below ``root`` into ``reading.tree``; in an overlay's upper dir (``upper``),
    first forget what each entry hides of the fresh files. Symlinks are read, never followed."""
    fresh = _FreshIndex(list(reading.tree.files) if upper else [])
    pending = [(str(root), "")]
    try:
        while pending:
            directory, prefix = pending.pop()
            with os.scandir(directory) as entries:
                for item in entries:
                    _within(reading.deadline)
                    path = prefix + item.name
                    info = item.stat(follow_symlinks=False)
                    if upper:  # a non-dir hides a fresh dir at its path, an opaque dir what was below it
                        hides_below = not stat.S_ISDIR(info.st_mode) or _is_opaque(item.path)
                        reading.tree.files.pop(path, None)
                        if hides_below:
                            for name in fresh.below(path):
                                reading.tree.files.pop(name, None)
                        if stat.S_ISCHR(info.st_mode) and info.st_rdev == _WHITEOUT_DEVICE:
                            continue  # a whiteout: deleted
                    if stat.S_ISDIR(info.st_mode):
                        if _ignored_name(item.name):
                            continue
                        if len(path) > MAX_PATH_CHARS or len(os.fsencode(item.path)) > _MAX_DIR_BYTES:
                            reading.leave_out_dir(path)  # nothing below can be named (nor maybe opened)
                        else:
                            pending.append((item.path, path + "/"))
                    elif not _ignored(path) and reading.named(path):
                        _read_entry(reading, path, item.path, info)
    except OSError as exc:
        raise UnreadableWorkspace(f"its files are unreadable ({exc})") from None


def _read_entry(reading: _Reading, path: str, host_path: str, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        reading.add_symlink(path, os.readlink(host_path))
    elif stat.S_ISREG(info.st_mode):
        if info.st_size > reading.max_file_bytes:  # not opened: its size alone leaves it out
            reading.add_file(path, info.st_size, False, io.BytesIO())
            return
        descriptor = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as stream:
            reading.add_file(path, info.st_size, bool(info.st_mode & 0o111), stream)
    else:
        reading.leave_out(path)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:  # no such attribute (or a filesystem without them)
        return False


def parent_dirs(paths: Iterable[str]) -> set[str]:
    """Every directory that holds one of ``paths`` (repo-relative)."""
    found: set[str] = set()
    for path in paths:
        head, sep, _ = path.rpartition("/")
        while sep and head not in found:
            found.add(head)
            head, sep, _ = head.rpartition("/")
    return found


class _FreshIndex:
    """The fresh files in order, so those below a dir are found without scanning every one (an agent
    that replaces many fresh dirs must not make the read quadratic)."""

    def __init__(self, paths: list[str]) -> None:
        self._dirs = parent_dirs(paths)
        self._paths = paths
        self._sorted: list[str] | None = None

    def below(self, path: str) -> Iterator[str]:
        if path not in self._dirs:
            return
        if self._sorted is None:
            self._sorted = sorted(self._paths)
        under = path + "/"
        index = bisect.bisect_left(self._sorted, under)
        while index < len(self._sorted) and self._sorted[index].startswith(under):
            yield self._sorted[index]
            index += 1


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
    """Which of ``paths`` the start commit's ``.gitignore`` files ignore (no user or system excludes).
    A path below one of its symlinks or submodules (an agent made a dir of one) is not ignored: git
    refuses to check it."""
    if not paths:
        return set()
    try:
        return _check_ignore(snapshot, paths)
    except RuntimeError:
        links = _links_and_submodules(snapshot)
        asked = [path for path in paths if not parent_dirs([path]) & links]
        if len(asked) == len(paths):
            raise
        return _check_ignore(snapshot, asked) if asked else set()


def _start_git(snapshot: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args], input=stdin, capture_output=True, env=_git_env(snapshot / ".git"), cwd=snapshot,
        check=False,
        start_new_session=True,  # like every helper of a trial: a terminal's Ctrl-C is the session's to handle
    )  # fmt: skip


def _check_ignore(snapshot: Path, paths: list[str]) -> set[str]:
    listed = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in paths)
    proc = _start_git(snapshot, "-c", "core.excludesFile=", "check-ignore", "-z", "--stdin", stdin=listed)
    if proc.returncode not in (0, 1):  # 1: none of them is ignored; anything else must not read as "none"
        raise RuntimeError(f"git check-ignore: {proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    return {name.decode("utf-8", "surrogateescape") for name in proc.stdout.split(b"\0") if name}


def _links_and_submodules(snapshot: Path) -> set[str]:
    """The start commit's symlinks and submodules (none when git cannot list them)."""
    proc = _start_git(snapshot, "ls-files", "--stage", "-z")
    if proc.returncode != 0:
        return set()
    entries = (entry.split(b"\t", 1) for entry in proc.stdout.split(b"\0") if b"\t" in entry)
    links = (path for meta, path in entries if meta.startswith((b"120000 ", b"160000 ")))
    return {path.decode("utf-8", "surrogateescape") for path in links}


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
