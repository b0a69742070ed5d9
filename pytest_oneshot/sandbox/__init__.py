"""The Sandbox extension point: where the agent and the hidden tests run.

A sandbox owns one workspace: the task's repo at its start commit, environment setup
done. The trial talks to it only through :class:`Sandbox`; everything else (baseline
commit, the agent's change, the scoring tree) is a helper in :mod:`pytest_oneshot.workspace`
that *takes* a sandbox, so a new backend implements six methods and nothing more.

A trial uses two sandboxes of the same spec: the agent's, and a fresh one the agent never
touched, where its change is scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal, Protocol, runtime_checkable

from pytest_oneshot.errors import SandboxUnavailableError
from pytest_oneshot.registry import Registry
from pytest_oneshot.task import Task

__all__ = [
    "ExecResult",
    "Sandbox",
    "SandboxFactory",
    "SandboxSpec",
    "SandboxUnavailableError",
    "default_sandbox_registry",
    "repo_root",
]

Network = Literal["none", "loopback"]


@dataclass(frozen=True)
class ExecResult:
    """What a command did. A non-zero exit is a result, not an exception."""

    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    duration_sec: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def text(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a backend needs to build one trial's sandbox."""

    task: Task
    repo_snapshot: Path
    """Host git repo whose HEAD is the start commit (history up to it only)."""
    trial_id: str
    """Unique per trial: run id + item; used for labels and names."""
    run_id: str
    network: Network = "none"
    cpus: float = 1.0
    memory_mb: int = 2048
    mounts: Mapping[Path, str] = field(default_factory=dict)
    """Host paths mounted read-only at the given sandbox path (e.g. an agent binary)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Session settings for backends (``docker_image``, ``cache_dir``); each reads the keys it knows."""
    model_url: str | None = None
    """Where the agent's model traffic goes (its gateway route), for a backend that lets only that host
    through (``network="loopback"`` on a remote backend); None: no model agent."""
    scoring: bool = False
    """A scoring sandbox: the agent never reaches it. When the task has ``tests.setup`` commands
    (which may run the agent's code before pytest starts), they must not be able to change the
    system the tests run on: read-only outside the workspace, HOME and /tmp. An agent's sandbox may
    let the agent change its system: nothing of it but the repo's files is scored."""

    @property
    def protect_system(self) -> bool:
        return self.scoring and bool(self.task.spec.tests.setup)


class Sandbox(Protocol):
    """One isolated workspace. ``workdir`` is the repo (or its ``subdir``) inside the sandbox.

    Every promise below is a test of ``tests/contract/test_sandbox_contract.py``, run on each
    backend; a backend that cannot keep one declares it there, with the reason, as a known gap.
    Methods may be called from several threads at once (an agent's command runs while the
    harness reads or writes files).
    """

    workdir: str

    def start(self) -> None:
        """Create the workspace: the repo at its start commit (no later commit, no remote), environment
        setup run.

        Raises:
            SandboxUnavailableError: the backend cannot run here (no engine, no image...).
            InfraError: setup failed (names the command and its output tail).
        """

    def exec(
        self,
        cmd: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        output: Path | None = None,
    ) -> ExecResult:
        """Run ``cmd`` inside the sandbox with a clean environment plus ``env``.

        A command that fails, or cannot be run at all (no such program, no such ``cwd``), is a
        result with a non-zero ``returncode`` whose output says why, never an exception. Output
        is bytes, kept as produced (any size, any bytes, stdout and stderr apart).

        Args:
            cmd: argv; use ``["bash", "-lc", script]`` for shell syntax.
            timeout: wall-clock seconds; at the limit the whole process tree is killed (children,
                processes in new sessions, orphans) and ``timed_out`` is set, output produced so far kept.
            env: extra variables; the host environment is never inherited.
            cwd: sandbox path, default ``workdir``.
            stdin: bytes fed to the command (stdin is closed otherwise).
            output: host file (or pipe) that receives stdout+stderr as they are produced; the
                result's ``stdout``/``stderr`` are then empty.

        Raises:
            InfraError: the sandbox itself is gone (a container removed or killed).
        """

    def write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` (relative to ``workdir``), creating its directories and replacing
        whatever is in the way (a file, a directory, a symlink), so a write never lands outside the
        workspace.

        Raises:
            PermissionError: ``path`` is empty, absolute or has ``..``.
        """

    def read_file(self, path: str) -> bytes:
        """Read ``path`` (relative to ``workdir``).

        Raises:
            FileNotFoundError: no such file (also when a parent is missing or is a file).
            IsADirectoryError: ``path`` is a directory.
            PermissionError: ``path`` is empty, absolute, has ``..``, is a symlink, or resolves
                outside the workspace.
            InfraError: the sandbox itself is gone.
        """

    def archive_workspace(self, *, stop_processes: bool = False) -> AbstractContextManager[IO[bytes]]:
        """Stream the whole repo (its top directory, :func:`repo_root`, not just ``workdir``) as an
        uncompressed tar.

        The archive's first member is the repo directory itself, every other member lies under
        it; symlinks are stored as symlinks, never followed (``.git`` may be left out). With
        ``stop_processes`` every process in the sandbox is killed first, so nothing changes the files
        while (or after) they are read; the sandbox then only needs :meth:`stop`.
        """

    def stop(self) -> None:
        """Release everything (processes, containers, temp dirs). Idempotent."""


@runtime_checkable
class SharedStart(Protocol):
    """A sandbox whose workspace starts as a shared copy nothing writes to (an image's workspace): the
    digests of its fresh files are read once per copy, not once per trial."""

    def start_key(self) -> str | None:
        """Names the exact files the workspace started with (None: not a shared copy, read them)."""


@dataclass(frozen=True)
class HostFiles:
    """A workspace whose files are a directory on this host, which no mount made inside the sandbox
    reaches: the harness reads them itself, without a process (or an archive) to read them.

    ``root`` is the workspace as the sandbox's processes see it. ``upper``, when the workspace is an
    overlay mounted over its fresh files, is the overlay's upper dir: everything written to the
    workspace since, as overlayfs keeps it -- whole copied-up files, whiteouts for deletions, opaque
    dirs for a dir removed and made again; never a redirect or a metadata-only copy (the mount turns
    both off). Then the agent's change is read from what it wrote, not from the whole workspace."""

    root: Path
    upper: Path | None = None


@runtime_checkable
class HostFilesWorkspace(Protocol):
    """A sandbox whose workspace is such a directory (the local sandbox's under bubblewrap, the docker
    backend's trees)."""

    def host_files(self, *, stop_processes: bool = False) -> HostFiles | None:
        """The workspace's files on this host (None: read it through :meth:`Sandbox.archive_workspace`);
        ``stop_processes`` first stops every process of the sandbox, as ``archive_workspace`` does."""


def repo_root(sandbox: Sandbox, spec: SandboxSpec) -> str:
    """The repo's top directory inside the sandbox (``workdir`` is the repo or its ``subdir``)."""
    workdir = PurePosixPath(sandbox.workdir)
    depth = len(PurePosixPath(spec.task.spec.repo.subdir).parts) if spec.task.spec.repo.subdir else 0
    return str(workdir.parents[depth - 1]) if depth else str(workdir)


class SandboxFactory(Protocol):
    """Builds a sandbox per trial: a ``Sandbox`` class is one, with ``cleanup_stale`` a staticmethod."""

    def __call__(self, spec: SandboxSpec) -> Sandbox: ...

    def cleanup_stale(self, options: Mapping[str, str]) -> list[str]:
        """Remove what sandboxes of dead runs left behind (a SIGKILLed run cleans nothing up), and
        nothing of a live one; return what was removed (``[]`` when a backend leaves nothing).
        Called once per session on the controller before any trial, with the session's options."""
        ...


def default_sandbox_registry() -> Registry[SandboxFactory]:
    registry: Registry[SandboxFactory] = Registry("sandbox", "pytest_oneshot.sandboxes")
    registry.register("local", "pytest_oneshot.sandbox.local:LocalSandbox")
    registry.register("docker", "pytest_oneshot.sandbox.docker_tree:docker_sandbox")
    registry.register(
        "modal", "pytest_oneshot.sandbox.modal:ModalSandbox", install_hint="pip install 'pytest-oneshot[modal]'"
    )
    registry.load_entry_points()
    return registry
