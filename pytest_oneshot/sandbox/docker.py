"""The docker sandbox: one container per trial, from the task's image (:mod:`docker_image`).

Containers carry their owner (host, boot, pid) in labels so a later run can remove the ones a killed
run left behind (:mod:`docker_reap`). Commands reach a container through its exec server or
``docker exec`` (:mod:`docker_exec`); files go in and out through commands, so the contract holds
whichever way commands go.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any, final

import docker.errors
from docker.types import Mount
from typing_extensions import override

from pytest_oneshot.errors import InfraError
from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox import ExecResult, Sandbox, SandboxSpec, execd, shell
from pytest_oneshot.sandbox.archive import archive_by_exec
from pytest_oneshot.sandbox.docker_exec import engine_exec, server_exec
from pytest_oneshot.sandbox.docker_image import WORKSPACE, environment_image
from pytest_oneshot.sandbox.docker_reap import LABEL, SERVER_HOME_LABEL, SERVER_HOME_PREFIX, reap
from pytest_oneshot.sandbox.dockerd import BASE_IMAGE, Engine, api_error, ensure_engine

SANDBOX_ENV = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "ONESHOT_IN_SANDBOX": "1",
}  # the same base environment as the local sandbox; the host's is never passed in
_SERVER_START_SEC = 10.0
_SERVER_SCRIPT = "/oneshot/execd.py"
_SERVER_DIR = "/oneshot/run"
_NO_SERVER = "no-server"
# The container's main process: the exec server (:mod:`execd`) when the image's python3 can run
# it; otherwise, or once it is gone, a sleep that keeps the container up for ``docker exec``.
_MAIN = f"python3 -I -S {_SERVER_SCRIPT} {_SERVER_DIR}; : >{_SERVER_DIR}/{_NO_SERVER}; exec sleep infinity"


@final
class DockerSandbox(Sandbox):
    """One trial in its own container of the task's environment image.

    Commands go to the container's exec server over a unix socket in a per-container host dir
    (:mod:`execd`), or through ``docker exec`` when the image cannot run the server: decided at
    :meth:`start`, and for good whenever the server stops being the one started with the container.
    """

    def __init__(self, spec: SandboxSpec, *, base_image: str | None = None, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.base_image = base_image or spec.options.get("docker_image") or BASE_IMAGE
        self.cache_dir = cache_dir or (Path(spec.options["cache_dir"]) if spec.options.get("cache_dir") else None)
        self.workdir = str(PurePosixPath(WORKSPACE, spec.task.spec.repo.subdir))
        safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.trial_id).strip("-.")[:80]
        self.name = f"oneshot-{safe}-{hashlib.sha256(spec.trial_id.encode()).hexdigest()[:8]}"
        self.image: str | None = None
        self._engine: Engine | None = None
        self._server_home: Path | None = None
        self._server: execd.Client | None = None

    @staticmethod
    def cleanup_stale(options: Mapping[str, str]) -> list[str]:
        """Session start: remove the containers of runs that died (see :func:`reap`)."""
        del options  # containers are found by their owner labels, whatever image they run
        return reap()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = ensure_engine()
        return self._engine

    @property
    def uses_server(self) -> bool:
        """Whether commands go to the exec server (else ``docker exec``)."""
        return self._server is not None

    @override
    def start(self) -> None:
        spec = self.spec
        self.image = environment_image(
            self.engine, spec.task, spec.repo_snapshot, base_image=self.base_image, cache_dir=self.cache_dir
        )
        # The server's socket dir is the only writable host path in the container. Its parent stays
        # private (0700), so nothing container root puts there (a setuid file) reaches other host users.
        self._server_home = Path(tempfile.mkdtemp(prefix=SERVER_HOME_PREFIX))
        socket_dir = self._server_home / "run"
        socket_dir.mkdir()
        labels = {
            f"{LABEL}.run_id": spec.run_id,
            f"{LABEL}.trial": spec.trial_id,
            SERVER_HOME_LABEL: str(self._server_home),
            **Owner.current().labels(),
        }
        config = container_config(self.engine, spec, image=self.image, workdir=self.workdir, socket_dir=socket_dir)
        _live.add(self)
        try:
            self.engine.api.create_container(name=self.name, labels=labels, **config)
            self.engine.api.start(self.name)
        except docker.errors.APIError as exc:
            raise api_error(f"starting container {self.name}", exc) from None
        self._server = self._attach_server(socket_dir)

    def _attach_server(self, socket_dir: Path) -> execd.Client | None:
        """The exec server's client once it listens, or None when the image cannot run it."""
        deadline = time.monotonic() + _SERVER_START_SEC
        while time.monotonic() < deadline:
            if (socket_dir / execd.SOCKET_NAME).exists():
                try:
                    return execd.Client.attach(str(socket_dir / execd.SOCKET_NAME))
                except execd.ServerLost:
                    return None
            if (socket_dir / _NO_SERVER).exists():
                return None
            time.sleep(0.005)
        if not self._running():
            raise InfraError("sandbox", f"container {self.name} exited at start; see `docker logs {self.name}`")
        return None  # the engine does not share this host's files: docker exec works all the same

    @override
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
        env, cwd = env or {}, cwd or self.workdir
        server = self._server
        if server is not None:
            started = time.monotonic()
            try:
                return server_exec(server, cmd, timeout=timeout, env=env, cwd=cwd, stdin=stdin, output=output)
            except execd.ServerLost:
                self._server = None  # killed or replaced (by the agent): docker exec from now on
            except ConnectionError as exc:
                # Killed mid-command by a process in the container (the agent's, or its code under the
                # tests): the command's fate is unknown, so it failed; the sandbox itself still runs.
                self._server = None
                self._raise_if_gone()
                message = f"the exec server in {self.name} was lost mid-command: {exc}\n".encode()
                return ExecResult(255, b"", message, False, time.monotonic() - started)
        result = engine_exec(self.engine, self.name, cmd, timeout=timeout, env=env, cwd=cwd, stdin=stdin, output=output)
        if result.returncode != 0 and not result.timed_out:  # the container may have died under it
            self._raise_if_gone()
        return result

    def _running(self) -> bool:
        try:
            return bool(self.engine.api.inspect_container(self.name)["State"]["Running"])
        except docker.errors.NotFound:
            return False

    def _raise_if_gone(self) -> None:
        if not self._running():
            raise InfraError(
                "sandbox", f"container {self.name} is not running (removed, or killed by the memory limit)"
            )

    @override
    def write_file(self, path: str, data: bytes) -> None:
        shell.write_by_exec(self, WORKSPACE, path, self.spec.task.spec.repo.subdir, data, name=self.name)

    @override
    def read_file(self, path: str) -> bytes:
        return shell.read_by_exec(self, WORKSPACE, path, self.spec.task.spec.repo.subdir, name=self.name)

    @override
    @contextlib.contextmanager
    def archive_workspace(self, *, stop_processes: bool = False) -> Iterator[IO[bytes]]:
        if self._server is not None:  # a few ms through the exec server, where docker kill + cp cost ~0.15 s
            with archive_by_exec(self, WORKSPACE, stop_processes=stop_processes) as archive:
                if archive is not None:
                    yield archive
                    return
        if stop_processes:  # --init: killing the container kills every process in it; the volume stays
            self._server = None
            with contextlib.suppress(docker.errors.APIError):  # already stopped
                self.engine.api.kill(self.name)
        try:
            chunks, _ = self.engine.api.get_archive(self.name, WORKSPACE)
        except docker.errors.APIError as exc:
            raise api_error(f"reading the workspace of {self.name}", exc) from None
        with io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 20) as archive:
            yield archive

    @override
    def stop(self) -> None:
        _live.discard(self)
        self._server = None
        if self._engine is not None:
            with contextlib.suppress(docker.errors.APIError):  # already removed
                self._engine.api.remove_container(self.name, v=True, force=True)
        if self._server_home is not None:
            shutil.rmtree(self._server_home, ignore_errors=True)
            self._server_home = None


def container_config(
    engine: Engine, spec: SandboxSpec, *, image: str, workdir: str, socket_dir: Path
) -> dict[str, Any]:
    """``create_container`` arguments for a trial's container, its name and labels aside.

    When tests.setup may run the agent's code before pytest, the scoring container's system is
    read-only, so it cannot change the python, plugins or shell under the tests; the workspace is
    then an anonymous volume seeded from the image (removed with the container; ~0.3 s more to start
    a mid-sized repo), HOME and /tmp are scratch. Otherwise the workspace lives in the container's own
    layer. The agent's container may change its own system: only the repo's files leave it, read once
    its processes are stopped.
    """
    mounts = [
        Mount(_SERVER_SCRIPT, str(Path(execd.__file__).resolve()), type="bind", read_only=True),
        Mount(_SERVER_DIR, str(socket_dir.resolve()), type="bind"),
        *(
            Mount(target, str(Path(host).resolve()), type="bind", read_only=True)
            for host, target in spec.mounts.items()
        ),
    ]
    tmpfs = {"/tmp": "exec", **({"/root": "", "/run": ""} if spec.protect_system else {})}
    host_config = engine.api.create_host_config(
        init=True,
        tmpfs=tmpfs,
        read_only=spec.protect_system,
        network_mode="host" if spec.network == "loopback" else "none",
        nano_cpus=round(spec.cpus * 1e9),
        mem_limit=f"{spec.memory_mb}m",
        memswap_limit=f"{spec.memory_mb}m",
        mounts=mounts,
    )
    return {
        "image": image,
        "entrypoint": ["sh"],
        "command": ["-c", _MAIN],
        "working_dir": workdir,
        "environment": dict(SANDBOX_ENV),
        "volumes": [WORKSPACE] if spec.protect_system else None,
        "host_config": host_config,
    }


class _ChunkReader(io.RawIOBase):
    """A file over the SDK's stream of archive chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


_live: set[DockerSandbox] = set()
"""Containers of this process not yet stopped: removed at exit (Ctrl-C); SIGKILL is left to :func:`reap`."""


@atexit.register
def _stop_live() -> None:
    for sandbox in list(_live):
        sandbox.stop()
