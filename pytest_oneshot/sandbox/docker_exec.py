"""The two ways a command reaches a container: its exec server (:mod:`execd`, a few ms each) and the
engine's exec (``docker exec``, ~60 ms), the fallback for images without python3 and for a server the
agent killed. Both keep the :meth:`Sandbox.exec` contract; the sandbox chooses."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import docker.errors
from docker.utils.socket import STDERR, frames_iter

from pytest_oneshot.errors import InfraError
from pytest_oneshot.sandbox import ExecResult, execd, shell
from pytest_oneshot.sandbox.dockerd import Engine, api_error
from pytest_oneshot.sandbox.process import KILL_GRACE_SEC, OnOutput, Running, Sink, drive

_EXIT_POLL_SEC = 0.01
_EXIT_WAIT_SEC = 5.0


def server_exec(
    server: execd.Client,
    cmd: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    output: Path | None,
) -> ExecResult:
    """Run ``cmd`` through the container's exec server, which kills the tree at the timeout itself.

    Raises:
        execd.ServerLost: nothing was sent (the command can still run through ``docker exec``).
        ConnectionError: the server was lost mid-command.
    """
    started = time.monotonic()
    sink = Sink(output)
    wait = None if timeout is None else timeout + 2 * KILL_GRACE_SEC
    try:
        end = server.run(
            cmd, env=env, cwd=cwd, timeout=timeout, stdin=stdin, merge=sink.file is not None,
            on_output=sink.write, wait=wait,
        )  # fmt: skip
    finally:
        sink.close()
    return sink.result(end.returncode, end.timed_out, started)


def engine_exec(
    engine: Engine,
    container: str,
    cmd: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    output: Path | None,
) -> ExecResult:
    """Run ``cmd`` through the engine's exec; its pid is recorded so a timeout finds and kills its whole tree.

    The SDK reads the exec's output from the raw socket after the HTTP response's headers, past the
    client's buffer: output sent right behind the headers would be lost. So the command starts only
    when the host, holding the socket, sends a newline first.

    Raises:
        InfraError: the container is gone or stopped (removed, or killed by the memory limit).
    """
    started = time.monotonic()
    pidfile = f"/tmp/.oneshot-exec-{uuid.uuid4().hex}.pid"
    argv = ["sh", "-c", shell.LAUNCH, "sh", shell.RECORD_PID, pidfile, *cmd]
    try:
        exec_id = engine.api.exec_create(container, argv, stdin=True, environment=dict(env), workdir=cwd)["Id"]
        stream = engine.api.exec_start(exec_id, socket=True)
    except docker.errors.APIError as exc:
        raise _gone_or(exc, container) from None
    conn: socket.socket = getattr(stream, "_sock", stream)  # the unix socket under the SDK's SocketIO
    conn.settimeout(None)
    sink = Sink(output)

    def read(on_output: OnOutput) -> None:
        with contextlib.suppress(OSError):
            for kind, data in frames_iter(stream, False):
                on_output(kind == STDERR, data)

    def feed(data: bytes) -> None:
        with contextlib.suppress(OSError):  # the command exited without reading it all
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # EOF on the command's stdin

    def kill_tree() -> None:
        with contextlib.suppress(docker.errors.APIError):  # the container is gone: so is the command
            quick = engine.api.exec_create(container, ["sh", "-c", shell.KILL_TREE, "sh", pidfile])["Id"]
            engine.api.exec_start(quick)

    def abandon() -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    running = Running(
        readers=[read], wait=lambda within: True, returncode=lambda: 0, kill_tree=kill_tree, abandon=abandon, feed=feed
    )
    try:
        timed_out = drive(running, stdin=b"\n" + (stdin or b""), timeout=timeout, on_output=sink.write)
        returncode = _exit_code(engine, exec_id, container)
    finally:
        sink.close()
        stream.close()
        conn.close()
    return sink.result(returncode, timed_out, started)


def _exit_code(engine: Engine, exec_id: str, container: str) -> int:
    """The exec's exit status, once the engine has recorded it (just after its output ends)."""
    deadline = time.monotonic() + _EXIT_WAIT_SEC
    while True:
        try:
            state = engine.api.exec_inspect(exec_id)
        except docker.errors.APIError as exc:
            raise _gone_or(exc, container) from None
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        if time.monotonic() > deadline:  # given up on after the kill: killed as far as we know
            return 137
        time.sleep(_EXIT_POLL_SEC)


def _gone_or(exc: docker.errors.APIError, container: str) -> InfraError:
    if exc.status_code in (404, 409):  # no such container (or exec), or it is not running
        return InfraError("sandbox", f"container {container} is not running (removed, or killed by the memory limit)")
    return api_error(f"docker exec in {container}", exc)
