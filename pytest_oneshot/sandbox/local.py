"""The local sandbox: a fresh workspace per trial, isolated with bubblewrap when it is installed.

Under bubblewrap the agent sees a read-only system (``/usr``, ``/etc``, the Python it
needs), its workspace at ``/workspace``, a private HOME and /tmp, and nothing else of the
host: not the task directory, the run directory or the repo cache. Without bubblewrap it
degrades to a plain subprocess in a temp dir, with a one-time warning.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from oneshot_shared.paths import cache_dir as default_cache_dir
from pytest_oneshot.errors import InfraError
from pytest_oneshot.owner import Owner, remove_dead_dirs, remove_dir
from pytest_oneshot.repo import git
from pytest_oneshot.sandbox import ExecResult, HostFiles, SandboxSpec
from pytest_oneshot.sandbox.bwrap import SANDBOX_HOME, SANDBOX_WORKSPACE, base_env, bubblewrap, bwrap_argv
from pytest_oneshot.sandbox.environment import VENV, VENV_BIN
from pytest_oneshot.sandbox.host_workspace import HostWorkspace
from pytest_oneshot.sandbox.process import MARKER, kill_host_tree, run_process

_ROOT_PREFIX = "oneshot-"
SETUP_TIMEOUT_SEC = 900.0


class LocalSandbox:
    """Workspace in a host temp dir; commands run under bubblewrap when available."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._bwrap = bubblewrap()
        self._root = Path(tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{spec.trial_id[:40]}-"))
        Owner.claim(self._root)  # so a later session can remove it if this process is SIGKILLed
        self._workspace = self._root / "workspace"
        self._home = self._root / "home"
        self._tmp = self._root / "tmp"
        subdir = spec.task.spec.repo.subdir
        if self._bwrap:
            self.workdir = str(Path(SANDBOX_WORKSPACE, subdir))
            self._env = base_env(SANDBOX_HOME, "/tmp")
        else:
            self.workdir = str(Path(self._workspace, subdir))
            self._env = base_env(str(self._home), str(self._tmp))
        self._env[MARKER] = self._root.name  # each command's processes carry it (see process.run_process)
        self._files = HostWorkspace(self._workspace, self._workspace / subdir)
        self._ro_binds: list[tuple[Path, str]] = []  # the task's venv, once built

    @staticmethod
    def cleanup_stale(options: Mapping[str, str]) -> list[str]:
        """Session start: remove the temp dirs of trials whose process died (SIGKILL skips :meth:`stop`)."""
        del options
        return remove_dead_dirs(Path(tempfile.gettempdir()), _ROOT_PREFIX)

    def start(self) -> None:
        for path in (self._home, self._tmp):
            path.mkdir(parents=True)
        try:
            git("clone", "-q", "--no-hardlinks", str(self.spec.repo_snapshot), str(self._workspace))
            git("remote", "remove", "origin", cwd=self._workspace)
        except RuntimeError as exc:
            raise InfraError("sandbox", f"could not copy the repo snapshot into the workspace: {exc}") from None
        if not self._files.workdir.is_dir():
            raise InfraError("sandbox", f"repo.subdir {self.spec.task.spec.repo.subdir!r} does not exist in the repo")
        self._use_environment()
        for command in self.spec.task.spec.environment.setup:
            result = self.exec(["bash", "-c", command], timeout=SETUP_TIMEOUT_SEC)
            if not result.ok:
                tail = result.text().strip().splitlines()[-5:]
                raise InfraError("setup", f"`{command}` failed (exit {result.returncode}): {' | '.join(tail)}")

    def _argv(self, cmd: Sequence[str], cwd: str) -> list[str]:
        if not self._bwrap:
            # No mount namespace: a command naming a mount point runs the host path instead.
            remap = {sandbox_path: str(host_path) for host_path, sandbox_path in self.spec.mounts.items()}
            return [remap.get(arg, arg) for arg in cmd]
        return bwrap_argv(
            self._bwrap,
            cmd,
            cwd,
            share_net=self.spec.network == "loopback",
            binds=[(self._home, SANDBOX_HOME), (self._workspace, SANDBOX_WORKSPACE)],
            ro_binds=[*self.spec.mounts.items(), *self._ro_binds],
        )

    def _use_environment(self) -> None:
        """Check the task's system packages and mount its venv (built once, cached) with its bin first on PATH."""
        from pytest_oneshot.sandbox.local_env import ensure_local_environment  # it builds with this module's bwrap

        cache_dir = self.spec.options.get("cache_dir")
        venv = ensure_local_environment(
            self.spec.task, self.spec.repo_snapshot, Path(cache_dir) if cache_dir else default_cache_dir(), self._bwrap
        )
        if venv is not None:
            self._ro_binds.append((venv, VENV))
            self._env.update(PATH=f"{VENV_BIN}:{self._env['PATH']}", VIRTUAL_ENV=VENV)

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
        cwd = cwd or self.workdir
        env = {**self._env, **(env or {})}
        argv, host_cwd = self._argv(cmd, cwd), None if self._bwrap else cwd
        return run_process(argv, env=env, cwd=host_cwd, stdin=stdin, timeout=timeout, output=output)

    def write_file(self, path: str, data: bytes) -> None:
        self._files.write_file(path, data)

    def read_file(self, path: str) -> bytes:
        return self._files.read_file(path)

    def archive_workspace(self, *, stop_processes: bool = False) -> AbstractContextManager[IO[bytes]]:
        # Under bubblewrap a command's processes die with its pid namespace when it returns; without,
        # they are found by the marker in their environment (which a process can drop: no isolation).
        if stop_processes:
            kill_host_tree(None, self._env[MARKER])
        return self._files.archive()

    def host_files(self, *, stop_processes: bool = False) -> HostFiles | None:
        """The workspace dir, under bubblewrap only: there a mount made inside stays inside. Without
        it the agent's code could mount something on the workspace that blocks a read for ever."""
        if not self._bwrap:
            return None
        if stop_processes:
            kill_host_tree(None, self._env[MARKER])
        return HostFiles(self._workspace)

    def stop(self) -> None:
        kill_host_tree(None, self._env[MARKER])
        remove_dir(self._root)
