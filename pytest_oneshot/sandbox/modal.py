"""The modal sandbox: each trial's two sandboxes are Modal Sandboxes, so a run is not bound by this
machine's cores (``--oneshot-concurrency N`` keeps N trials in flight per pytest process).

- The image is the docker sandbox's (:mod:`modal_image`), built by Modal's image API; the agent's
  files (its binary) are uploaded once to Volumes and mounted read-only.
- One Modal Sandbox per sandbox: the agent's, and the scoring one the agent never reached, each with
  the task's CPU and memory as hard limits, ``block_network``, tagged with its owner so a later session
  terminates what a killed run left (:meth:`ModalSandbox.cleanup_stale`).
- Commands go through ``Sandbox.exec``; each records its pid first (:data:`shell.LAUNCH`), so at the
  timeout a second exec kills its whole tree (:data:`shell.KILL_TREE`). The variables given to a
  command travel as an ephemeral ``modal.Secret``, never as an argument of a call (a command agent's
  model key among them); nothing is baked into an image. Files go in and out through commands
  (:mod:`shell`, :mod:`archive`), so the contract holds as in the docker sandbox.
- ``network="loopback"`` (a model agent, codex): the harness's gateway on this machine's loopback is out
  of Modal's reach, so the trial's route runs in a sidecar Sandbox (:mod:`modal_gateway`, this backend's
  :meth:`ModalSandbox.model_route_host`) that holds the key; the agent's Sandbox may reach that route's
  tunnel host only (``outbound_domain_allowlist``), and sees a random route token, never the key.
- The trials on Modal at once are what this machine keeps in flight: ``-n`` workers times
  ``--oneshot-concurrency N`` (plus the next N items' sandboxes started ahead), two Sandboxes each.

The client is imported only when this backend is used (:mod:`modal_client`).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any, final
from urllib.parse import urlsplit

from typing_extensions import override

from pytest_oneshot.errors import InfraError, SandboxUnavailableError
from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox import ExecResult, Sandbox, SandboxSpec, shell
from pytest_oneshot.sandbox.archive import archive_by_exec
from pytest_oneshot.sandbox.docker import SANDBOX_ENV
from pytest_oneshot.sandbox.docker_image import WORKSPACE
from pytest_oneshot.sandbox.modal_client import CLIENT_ENV, TAG, app_for, modal_client
from pytest_oneshot.sandbox.modal_gateway import ModalRouteHost
from pytest_oneshot.sandbox.modal_image import mount_volumes, task_image
from pytest_oneshot.sandbox.process import KILL_GRACE_SEC, OnOutput, Running, Sink, drive

__all__ = ["CLIENT_ENV", "ModalSandbox", "modal_client"]

_LIFETIME_MARGIN_SEC = 3600
_MAIN_PID_FILE = "/tmp/.oneshot-main.pid"
# The Sandbox's main process: it keeps the Sandbox up, so it must outlive the stop before an archive;
# its pid is read once at start, before the agent runs.
_MAIN = f"echo $$ >{_MAIN_PID_FILE}; exec sleep infinity"
_MAIN_START_SEC = 30.0
# `sh -c _IN_DIR DIR ARGV...`: run ARGV in DIR (a missing DIR is a failed command, as the contract asks).
_IN_DIR = 'cd "$0" && exec "$@"'


@final
class ModalSandbox(Sandbox):
    """One sandbox of a trial, as a Modal Sandbox of the task's image (see the module docstring)."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.workdir = str(PurePosixPath(WORKSPACE, spec.task.spec.repo.subdir))
        safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.trial_id).strip("-.")[:60]
        self.name = f"modal sandbox {safe}"
        self._modal: Any = None
        self._sandbox: Any = None
        self._main_pid = 0

    @staticmethod
    def cleanup_stale(options: Mapping[str, str]) -> list[str]:
        """Terminate the Modal Sandboxes of this host's runs that died (see :class:`Owner`).

        Nothing to do (no client, no credentials) is not an error: nothing of ours can be running.
        """
        try:
            modal = modal_client()
            app = app_for(modal, options)
        except SandboxUnavailableError:
            return []
        mine = {f"{TAG}.owner.host": Owner.current().host}
        removed = []
        for sandbox in modal.Sandbox.list(app_id=app.app_id, tags=mine):
            owner = Owner.from_labels(sandbox.get_tags())
            if owner is not None and owner.is_dead():
                with contextlib.suppress(modal.exception.Error):  # gone meanwhile
                    sandbox.terminate()
                    removed.append(str(sandbox.object_id))
        return removed

    @staticmethod
    def model_route_host(options: Mapping[str, str], run_id: str) -> ModalRouteHost:
        """Where a trial's model route runs: a sidecar Sandbox beside the agent's (see :mod:`modal_gateway`)."""
        return ModalRouteHost(options, run_id)

    def _network(self) -> dict[str, Any]:
        """No network; for a model agent, only its route's host (its gateway's tunnel)."""
        spec = self.spec
        if spec.network != "loopback":
            return {"block_network": True}
        host = urlsplit(spec.model_url or "").hostname
        if host is None:
            raise SandboxUnavailableError(
                "modal sandbox: this agent needs a server on this machine's loopback, which Modal's cloud cannot "
                "reach; a model agent's gateway runs beside it (a sidecar Sandbox) only in a trial, which gives "
                "the sandbox its route (SandboxSpec.model_url)"
            )
        return {"block_network": False, "outbound_domain_allowlist": [host]}

    @override
    def start(self) -> None:
        spec = self.spec
        network = self._network()
        self._modal = modal = modal_client()
        app = app_for(modal, spec.options)
        image = task_image(modal, app, spec.task, spec.repo_snapshot, spec.options.get("modal_image") or "")
        volumes, links = mount_volumes(modal, spec.mounts)
        limits = spec.task.spec.limits
        tags = {f"{TAG}.run_id": spec.run_id, f"{TAG}.trial": spec.trial_id, **Owner.current().labels()}
        _live.add(self)
        try:
            self._sandbox = modal.Sandbox.create(
                "sh",
                "-c",
                _MAIN,
                app=app,
                image=image,
                tags=tags,
                env=dict(SANDBOX_ENV),
                timeout=math.ceil(limits.agent_timeout_sec + limits.tests_timeout_sec) + _LIFETIME_MARGIN_SEC,
                workdir=self.workdir,
                cpu=(spec.cpus, spec.cpus),
                memory=(spec.memory_mb, spec.memory_mb),
                volumes=volumes,
                **network,
            )
        except modal.exception.Error as exc:
            raise InfraError("sandbox", f"creating the {self.name} failed: {exc}") from None
        self._main_pid = self._read_main_pid()
        for target, source in links.items():
            link = self.exec(["sh", "-c", 'mkdir -p "${1%/*}" && ln -sfn "$0" "$1"', source, target], timeout=60)
            if not link.ok:
                raise InfraError("sandbox", f"could not place {target} in the {self.name}: {link.text().strip()}")

    def _read_main_pid(self) -> int:
        deadline = time.monotonic() + _MAIN_START_SEC
        while True:
            found = self.exec(["cat", _MAIN_PID_FILE], timeout=60)
            if found.ok and found.stdout.strip().isdigit():
                return int(found.stdout)
            if time.monotonic() > deadline:
                raise InfraError("sandbox", f"the {self.name} did not start its main process: {found.text().strip()}")
            time.sleep(0.1)

    def _running(self) -> Any:
        if self._sandbox is None:
            raise InfraError("sandbox", f"the {self.name} is not running (start() first, or stopped)")
        return self._sandbox

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
        sandbox, modal, started = self._running(), self._modal, time.monotonic()
        pidfile = f"/tmp/.oneshot-exec-{uuid.uuid4().hex}.pid"
        argv = ["sh", "-c", _IN_DIR, cwd or self.workdir, "sh", "-c", shell.LAUNCH, "sh", shell.RECORD_PID, pidfile]
        secrets = [modal.Secret.from_dict(dict(env))] if env else []
        backstop = None if timeout is None else math.ceil(timeout + 2 * KILL_GRACE_SEC)  # if we are gone
        try:
            process = sandbox.exec(*argv, *cmd, timeout=backstop, secrets=secrets, text=False)
        except modal.exception.Error as exc:
            raise self._gone(exc) from None
        sink = Sink(output)
        try:
            timed_out = drive(self._running_command(process, pidfile), stdin=b"\n" + (stdin or b""), timeout=timeout,
                              on_output=sink.write)  # fmt: skip
        finally:
            sink.close()
        code = None
        with contextlib.suppress(modal.exception.Error):
            code = process.poll()
        returncode = 137 if code is None else int(code)  # None: given up on after the kill, killed as far as we know
        if returncode != 0 and not timed_out and sandbox.poll() is not None:
            raise InfraError("sandbox", f"the {self.name} has ended (terminated, or its lifetime ran out)")
        return sink.result(returncode, timed_out, started)

    def _running_command(self, process: Any, pidfile: str) -> Running:
        """A Modal exec as :func:`drive` sees it: two output streams, stdin, wait, and the tree kill."""
        exited, abandoned = threading.Event(), threading.Event()
        errors = self._modal.exception.Error

        def reader(stream: Any, is_stderr: bool) -> Any:
            def read(on_output: OnOutput) -> None:
                with contextlib.suppress(errors):  # the sandbox ended under the command
                    for chunk in stream:
                        on_output(is_stderr, chunk)

            return read

        def feed(data: bytes) -> None:
            with contextlib.suppress(errors):  # the command exited without reading it all
                process.stdin.write(data)
                process.stdin.write_eof()
                process.stdin.drain()

        def waiter() -> None:
            with contextlib.suppress(errors):
                process.wait()
            exited.set()

        threading.Thread(target=waiter, daemon=True).start()

        def kill_tree() -> None:
            with contextlib.suppress(errors):  # the sandbox is gone: so is the command
                self._running().exec("sh", "-c", shell.KILL_TREE, "sh", pidfile, text=False).wait()

        return Running(
            readers=[reader(process.stdout, False), reader(process.stderr, True)],
            wait=lambda within: exited.wait(within) or abandoned.is_set(),
            returncode=lambda: 0,  # read from the process once driven
            kill_tree=kill_tree,
            abandon=abandoned.set,
            feed=feed,
        )

    def _gone(self, exc: Exception) -> InfraError:
        return InfraError("sandbox", f"the {self.name} cannot run commands (terminated, or lost): {exc}")

    @override
    def write_file(self, path: str, data: bytes) -> None:
        shell.write_by_exec(self, WORKSPACE, path, self.spec.task.spec.repo.subdir, data, name=self.name)

    @override
    def read_file(self, path: str) -> bytes:
        return shell.read_by_exec(self, WORKSPACE, path, self.spec.task.spec.repo.subdir, name=self.name)

    @override
    @contextlib.contextmanager
    def archive_workspace(self, *, stop_processes: bool = False) -> Iterator[IO[bytes]]:
        spare = (self._main_pid,)
        with archive_by_exec(self, WORKSPACE, stop_processes=stop_processes, spare=spare) as archive:
            if archive is None:
                raise InfraError("sandbox", f"could not archive the workspace of the {self.name}")
            yield archive

    @override
    def stop(self) -> None:
        _live.discard(self)
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            with contextlib.suppress(self._modal.exception.Error):  # already ended
                sandbox.terminate()


_live: set[ModalSandbox] = set()
"""Sandboxes of this process not yet stopped: terminated at exit (Ctrl-C); SIGKILL is left to cleanup_stale."""


@atexit.register
def _stop_live() -> None:
    for sandbox in list(_live):
        sandbox.stop()
