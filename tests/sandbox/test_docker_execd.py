"""The docker sandbox's in-container exec server: streaming, concurrency, hang-ups, and an agent
that kills or impersonates it (the sandbox must then run commands for real, through docker exec)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from pytest_oneshot.sandbox import ExecResult, execd
from pytest_oneshot.sandbox.docker import DockerSandbox
from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = pytest.mark.docker

MakeSandbox = Callable[..., DockerSandbox]


def _running_commands(sandbox: DockerSandbox) -> str:
    return sandbox.exec(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"], timeout=60).stdout.decode()


def test_concurrent_execs_in_one_container(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox()
    script = 'echo "out $1"; sleep 0.3; echo "err $1" >&2; exit "$1"'
    results: dict[int, ExecResult] = {}

    def run(index: int) -> None:
        results[index] = sandbox.exec(["sh", "-c", script, "sh", str(index)], timeout=60, env={"N": str(index)})

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, result in results.items():
        assert (result.returncode, result.stdout, result.stderr) == (
            index,
            f"out {index}\n".encode(),
            f"err {index}\n".encode(),
        )
    assert len(results) == 8 and sandbox.uses_server


def test_a_client_that_hangs_up_ends_its_command(make_sandbox: MakeSandbox, engine: Engine) -> None:
    sandbox = make_sandbox()
    client = execd.Client.attach(str(_socket_dir(engine, sandbox) / execd.SOCKET_NAME))

    def hang_up(is_stderr: bool, data: bytes) -> None:
        raise KeyboardInterrupt  # as Ctrl-C on the host while the command runs

    with pytest.raises(KeyboardInterrupt):
        client.run(
            ["sh", "-c", "sleep 311 & setsid sleep 312 & echo started; exec sleep 310"],
            env={}, cwd="/", timeout=None, stdin=None, merge=False, on_output=hang_up, wait=60,
        )  # fmt: skip
    wait_for(lambda: "sleep 31" not in _running_commands(sandbox), "the hung-up command's tree to die")


def _binds(engine: Engine, sandbox: DockerSandbox) -> dict[str, dict[str, Any]]:
    mounts = engine.api.inspect_container(sandbox.name)["Mounts"]
    return {mount["Destination"]: mount for mount in mounts if mount["Type"] == "bind"}


def _socket_dir(engine: Engine, sandbox: DockerSandbox) -> Path:
    return Path(_binds(engine, sandbox)["/oneshot/run"]["Source"])


def _server_pid(engine: Engine, sandbox: DockerSandbox) -> int:
    top = engine.api.top(sandbox.name, ps_args="-eo pid,args")["Processes"]
    (pid,) = [int(row[0]) for row in top if row[1].startswith("python3 -I -S")]
    return pid


def test_socket_dir_is_per_container_private_and_removed_at_stop(make_sandbox: MakeSandbox, engine: Engine) -> None:
    first, second = make_sandbox(), make_sandbox(task_kwargs={"name": "second"})
    dirs = []
    for sandbox in (first, second):
        binds = _binds(engine, sandbox)
        assert set(binds) == {"/oneshot/execd.py", "/oneshot/run"}  # nothing else of the host
        script = binds["/oneshot/execd.py"]
        assert not script["RW"] and Path(script["Source"]) == Path(execd.__file__).resolve()
        socket_dir = Path(binds["/oneshot/run"]["Source"])
        assert (socket_dir / execd.SOCKET_NAME).is_socket()
        assert socket_dir.parent.stat().st_mode & 0o777 == 0o700  # what container root drops there stays ours
        dirs.append(socket_dir)
    assert dirs[0] != dirs[1]
    first.stop()
    assert not dirs[0].parent.exists() and dirs[1].exists()
    second.stop()
    assert not dirs[1].parent.exists()


# An agent (root in the container) swaps the server's socket for its own, which claims every
# command succeeded. It must not be believed: the sandbox notices and runs commands itself.
_IMPOSTOR = """
import json, os, socket, struct
path = "/oneshot/run/sock"
os.unlink(path)
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen()
open("/oneshot/run/impostor-ready", "w").close()
while True:
    conn, _ = listener.accept()
    answer = json.dumps({"returncode": 0, "timed_out": False}).encode()
    conn.sendall(struct.pack(">cI", b"x", len(answer)) + answer)
    conn.close()
"""


def test_an_impostor_socket_is_never_trusted(make_sandbox: MakeSandbox, engine: Engine) -> None:
    sandbox = make_sandbox()
    detach = 'setsid -f python3 -c "$1" >/dev/null 2>&1'
    assert sandbox.exec(["sh", "-c", detach, "sh", _IMPOSTOR], timeout=60).ok
    ready = _socket_dir(engine, sandbox) / "impostor-ready"
    wait_for(ready.exists, "the impostor to listen")
    assert sandbox.exec(["sh", "-c", "exit 7"], timeout=60).returncode == 7
    assert not sandbox.uses_server
    assert sandbox.exec(["sh", "-c", "echo real"], timeout=60).stdout == b"real\n"


def test_a_killed_server_falls_back_to_docker_exec(make_sandbox: MakeSandbox, engine: Engine) -> None:
    sandbox = make_sandbox()
    pid = _server_pid(engine, sandbox)
    os.kill(pid, signal.SIGTERM)  # as a stray `pkill python3` in the container: ignored
    assert sandbox.exec(["true"], timeout=60).ok and sandbox.uses_server
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the server to die")
    assert sandbox.exec(["sh", "-c", "echo still here"], timeout=60).stdout == b"still here\n"
    assert not sandbox.uses_server
