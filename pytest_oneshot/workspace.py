"""Steps on a sandbox's workspace: the agent's baseline commit, reading trees, writing the scored tree.

Everything here goes through the :class:`Sandbox` protocol, so it works the same for every
backend (a :class:`HostFilesWorkspace` is read from this host's files, faster, to the same tree).
The agent's git repository is used for one thing only, a courtesy to the agent: a
baseline commit after environment setup, so ``git status`` shows just its own work. The change
that is scored is read from the files (:mod:`pytest_oneshot.change`), never from that git.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_oneshot.change import (
    MAX_CHANGE_BYTES,
    MAX_FILE_BYTES,
    Change,
    Entry,
    Manifest,
    UnreadableWorkspace,
    compute_change,
    read_archive,
    read_host_dir,
    read_upper,
)
from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox import HostFiles, HostFilesWorkspace, Sandbox, SharedStart
from pytest_oneshot.scoring.overlay import ScoredTree

_FRESH_BY_START: dict[str, Manifest] = {}
"""Fresh manifests by :meth:`SharedStart.start_key` (a process sees few images)."""
_FRESH_LOCK = threading.Lock()
GIT_TIMEOUT_SEC = 120.0
FILE_TIMEOUT_SEC = 300.0
_SAFE_GIT = [
    "git",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "user.name=oneshot",
    "-c", "user.email=oneshot@localhost",
    "-c", "commit.gpgsign=false",
    "-c", "safe.directory=*",
    "-c", "maintenance.auto=false",  # no `git maintenance run --auto` after the commit
    "-c", "gc.auto=0",
]  # fmt: skip
_BASELINE = (
    f'g() {{ {shlex.join(_SAFE_GIT)} "$@"; }}; cd "$(g rev-parse --show-toplevel)" && '
    'g add -A && g commit -q --allow-empty --no-verify -m "oneshot baseline"'
)


def commit_baseline(sandbox: Sandbox) -> None:
    """Commit what environment setup produced, so the agent's ``git status``/``git diff`` show its work only."""
    result = sandbox.exec(["bash", "-c", _BASELINE], timeout=GIT_TIMEOUT_SEC)
    if not result.ok:
        raise InfraError("sandbox", f"baseline commit failed: {result.text().strip()[-300:]}")


def fresh_manifest(sandbox: Sandbox) -> Manifest:
    """Digests of every file of a workspace nobody has touched yet (read once per shared start)."""
    key = sandbox.start_key() if isinstance(sandbox, SharedStart) else None
    with _FRESH_LOCK:
        known = _FRESH_BY_START.get(key) if key is not None else None
    if known is None:
        files = _host_files(sandbox)
        if files is not None:
            known = read_host_dir(files.root).files
        else:
            with sandbox.archive_workspace() as archive:
                known = read_archive(archive).files
        if key is not None:
            with _FRESH_LOCK:
                _FRESH_BY_START[key] = known
    return dict(known)


def collect_change(
    sandbox: Sandbox,
    fresh: Manifest,
    snapshot: Path | None = None,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_change_bytes: int = MAX_CHANGE_BYTES,
) -> Change:
    """Stop every process of the agent's sandbox, then read its files and compare them with ``fresh``
    (new files ignored by the start commit's ``snapshot`` are not part of the change). Files on this
    host are read without an archive; an overlay's, from what was written to it (its upper dir).

    Raises:
        UnreadableWorkspace: the agent left its sandbox in a state its files cannot be read from.
    """
    limits = {"max_file_bytes": max_file_bytes, "max_change_bytes": max_change_bytes}
    try:
        files = _host_files(sandbox, stop_processes=True)
        if files is not None and files.upper is not None:  # what the agent wrote, not the whole workspace
            tree = read_upper(files.upper, fresh, **limits)
        elif files is not None:
            tree = read_host_dir(files.root, baseline=fresh, **limits)
        else:
            with sandbox.archive_workspace(stop_processes=True) as archive:
                tree = read_archive(archive, baseline=fresh, **limits)
    except InfraError as exc:  # the agent's own sandbox, in whatever state the agent left it
        raise UnreadableWorkspace(exc.problem) from None
    return compute_change(fresh, tree, snapshot)


def _host_files(sandbox: Sandbox, *, stop_processes: bool = False) -> HostFiles | None:
    if not isinstance(sandbox, HostFilesWorkspace):
        return None
    return sandbox.host_files(stop_processes=stop_processes)


def _tar(entries: Mapping[str, Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in entries.items():
            info = tarfile.TarInfo(path)
            if entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                tar.addfile(info)
            else:
                data = entry.blob()
                info.size, info.mode = len(data), 0o755 if entry.executable else 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_scored_tree(sandbox: Sandbox, root: str, tree: ScoredTree) -> None:
    """Turn the fresh workspace at ``root`` into the scored tree: deletions first, then every file."""
    if tree.remove:
        listed = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in tree.remove)
        result = sandbox.exec(["xargs", "-0", "rm", "-rf", "--"], stdin=listed, cwd=root, timeout=FILE_TIMEOUT_SEC)
        if not result.ok:
            raise InfraError("tests", f"could not remove the agent's deletions: {result.text().strip()[-300:]}")
    if tree.files:
        tar = ["tar", "-x", "-f", "-", "--no-same-owner", "--overwrite"]
        result = sandbox.exec(tar, stdin=_tar(tree.files), cwd=root, timeout=FILE_TIMEOUT_SEC)
        if not result.ok:
            raise InfraError("tests", f"could not write the scored files: {result.text().strip()[-300:]}")


def fresh_side(sandbox: Sandbox, root: str, paths: Iterable[str], fresh: Manifest, snapshot: Path) -> dict[str, Entry]:
    """The fresh content of ``paths`` (for the run dir's patch): from the host snapshot when it
    is the same file, else read from the (still fresh) scoring sandbox."""
    found: dict[str, Entry] = {}
    missing: list[str] = []
    for path in paths:
        entry = fresh.get(path)
        if entry is None:
            continue
        if entry.kind == "symlink":
            found[path] = entry
            continue
        host = snapshot / path
        if host.is_file() and not host.is_symlink():
            data = host.read_bytes()
            if hashlib.sha256(data).hexdigest() == entry.digest:
                found[path] = Entry("file", entry.digest, entry.executable, data=data)
                continue
        missing.append(path)
    if missing:
        listed = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in missing)
        read = ["tar", "--null", "-T", "-", "-cf", "-"]
        result = sandbox.exec(read, stdin=listed, cwd=root, timeout=FILE_TIMEOUT_SEC)
        if result.ok:
            with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
                for member in tar:
                    handle = tar.extractfile(member) if member.isreg() else None
                    if handle is not None and member.name in fresh:
                        old = fresh[member.name]
                        found[member.name] = Entry("file", old.digest, old.executable, data=handle.read())
    return found
