"""In-container exec server of the docker sandbox: one unix-socket connection per command instead
of one ``docker exec``, which costs ~65 ms of CLI and engine round trip where this costs a few.

The container's ``python3`` runs this file as its main process (stdlib only, Python >= 3.8):
``python3 -I -S execd.py DIR`` listens on ``DIR/sock``, DIR being a per-container host temp dir
mounted into the container, so containers keep ``--network none``. One connection, one command:

- client: one JSON line ``{"argv", "env", "cwd", "timeout", "stdin", "merge"}`` (``stdin`` is a
  byte count, or null to close the command's stdin), then that many bytes;
- server: frames of ``kind (1 byte) + length (4 bytes, big-endian) + payload``: ``o`` stdout and
  ``e`` stderr as produced (``merge`` sends both as ``o``, in order), then one ``x`` holding JSON
  ``{"returncode", "timed_out"}``.

At the timeout, or when the client hangs up (Ctrl-C on the host), the command's whole process tree
is killed (:func:`kill_tree`) and the output so far has been sent. The host side (:class:`Client`)
is here too, so the protocol lives in one file.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, final

SOCKET_NAME = "sock"
_FRAME = struct.Struct(">cI")
_STDOUT, _STDERR, _EXIT = b"o", b"e", b"x"
_CHUNK = 65536
_LINGER_SEC = 2.0
"""After the command exits, how long a background child may keep its output open (``docker exec`` waits ~2 s too)."""
_KILL_GRACE_SEC = 10.0
_TICK_SEC = 0.1
_CONNECT_TIMEOUT_SEC = 10.0


def process_stat(pid: int) -> tuple[int, int, int] | None:
    """``(ppid, session, start time in clock ticks since boot)`` of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[3]), int(fields[19])


def kill_tree(root: int, since: int) -> None:
    """SIGKILL ``root`` and every process below it, in its session, or orphaned (reparented to init)
    since it started; each is stopped as soon as found, so no parent dies before its children are."""
    found = {root}
    _signal(root, signal.SIGSTOP)
    spare = {os.getpid(), 1}
    changed = True
    while changed:
        changed = False
        for name in os.listdir("/proc"):
            pid = int(name) if name.isdigit() else 0
            stat = process_stat(pid) if pid and pid not in found and pid not in spare else None
            if stat is None:
                continue
            ppid, session, start = stat
            if ppid in found or session == root or (ppid == 1 and start >= since):
                found.add(pid)
                _signal(pid, signal.SIGSTOP)
                changed = True
    for pid in found:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.kill(pid, signum)


def _send(conn: socket.socket, kind: bytes, payload: bytes) -> None:
    conn.sendall(_FRAME.pack(kind, len(payload)) + payload)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), _CHUNK))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        data += chunk
    return bytes(data)


class _HungUp(Exception):
    """The client closed the connection: nobody waits for this command any more."""


def _serve(conn: socket.socket, base_env: Mapping[str, str]) -> None:
    try:
        reader = conn.makefile("rb")
        request = json.loads(reader.readline())
        size = request["stdin"]
        stdin = None if size is None else reader.read(size)
        reader.close()  # the socket stays open; it was dup'ed by makefile
        _send(conn, _EXIT, json.dumps(_run(conn, request, stdin, base_env)).encode())
    except (OSError, ValueError, KeyError, _HungUp):
        pass  # the client is gone or spoke nonsense; the command, if any, is dead
    finally:
        conn.close()


def _run(
    conn: socket.socket, request: dict[str, Any], stdin: bytes | None, base_env: Mapping[str, str]
) -> dict[str, object]:
    merge = bool(request["merge"])
    try:
        proc = subprocess.Popen(
            request["argv"],
            cwd=request["cwd"],
            env={**base_env, "PWD": request["cwd"], **request["env"]},  # PWD as a shell would set it
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            start_new_session=True,  # its own session: found by kill_tree even after its parent dies
        )
    except OSError as exc:  # as a shell reports it: 127 not found, 126 not runnable
        _send(conn, _STDOUT if merge else _STDERR, f"execd: {exc}\n".encode())
        return {"returncode": 127 if isinstance(exc, FileNotFoundError) else 126, "timed_out": False}
    stat = process_stat(proc.pid)
    since = stat[2] if stat else 0
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
    try:
        timed_out = _pump(conn, proc, request["timeout"], lambda: kill_tree(proc.pid, since))
    except (_HungUp, OSError):
        kill_tree(proc.pid, since)
        raise _HungUp from None
    code = proc.poll()
    if code is None:  # unkillable (stuck in the kernel): report what we know
        code = -signal.SIGKILL
    return {"returncode": 128 - code if code < 0 else code, "timed_out": timed_out}


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:
        pass  # the command exited without reading it all


def _pump(conn: socket.socket, proc: subprocess.Popen[bytes], timeout: float | None, kill: Callable[[], None]) -> bool:
    """Forward output until the command has exited and its pipes closed; return whether it timed out."""
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, b"")  # readable only when the client hangs up
    for pipe, kind in ((proc.stdout, _STDOUT), (proc.stderr, _STDERR)):
        if pipe is not None:
            selector.register(pipe, selectors.EVENT_READ, kind)
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    exited: float | None = None
    try:
        while True:
            now = time.monotonic()
            pipes_open = len(selector.get_map()) > 1
            if proc.poll() is not None:
                exited = now if exited is None else exited
                if not pipes_open or now - exited >= _LINGER_SEC:
                    break  # after the linger, a background child holding the pipe goes on without us
            elif deadline is not None and now >= deadline:
                if timed_out:
                    break  # killed, yet still there after the grace
                timed_out = True
                kill()
                deadline = now + _KILL_GRACE_SEC
            wait = min(
                _TICK_SEC,
                _TICK_SEC if deadline is None else max(deadline - now, 0.0),
                _TICK_SEC if exited is None else exited + _LINGER_SEC - now,
            )
            if pipes_open:
                events = selector.select(wait)
            else:  # output closed: wait for the exit itself (polled finely by subprocess)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                events = selector.select(0)
            for key, _ in events:
                if key.fileobj is conn:
                    raise _HungUp  # the client sends nothing after its request
                data = os.read(key.fd, _CHUNK)
                if data:
                    _send(conn, key.data, data)
                else:
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return timed_out


def serve(directory: str) -> None:
    """Listen on ``directory/sock`` (renamed into place once listening) and run commands forever."""
    base_env = dict(os.environ)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, lambda *_: None)  # a `pkill python3` in the container is not ours to obey
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = os.path.join(directory, f".{SOCKET_NAME}-{os.getpid()}")
    listener.bind(staging)
    listener.listen(64)
    os.rename(staging, os.path.join(directory, SOCKET_NAME))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn, base_env), daemon=True).start()


# --- host side ----------------------------------------------------------------------------------


class Exit(NamedTuple):
    """How the command ended."""

    returncode: int
    timed_out: bool


class ServerLost(Exception):
    """The socket is gone, or another process than the server answers it: nothing was sent."""


@final
class Client:
    """Talks to one container's server; every connection must reach the process that answered first.

    The agent is root in the container and could replace the socket with its own listener (or a
    symlink to a host socket): each connection's peer (``SO_PEERCRED``, pid + start time) is
    checked before a byte is sent.
    """

    def __init__(self, path: str, server: tuple[int, int]) -> None:
        self.path = path
        self._server = server

    @classmethod
    def attach(cls, path: str) -> Client:
        """Trust the process serving ``path`` now (before the agent runs).

        Raises:
            ServerLost: nothing answers, or its process is not visible from here.
        """
        conn = cls._connect(path)
        try:
            return cls(path, cls._peer(conn))
        finally:
            conn.close()

    @staticmethod
    def _connect(path: str) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(_CONNECT_TIMEOUT_SEC)
        try:
            conn.connect(path)
        except OSError as exc:
            conn.close()
            raise ServerLost(f"{path}: {exc}") from None
        return conn

    @staticmethod
    def _peer(conn: socket.socket) -> tuple[int, int]:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        stat = process_stat(pid) if pid > 0 else None
        if stat is None:
            raise ServerLost(f"the process serving {conn.getpeername()} is not visible from here")
        return pid, stat[2]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        timeout: float | None,
        stdin: bytes | None,
        merge: bool,
        on_output: Callable[[bool, bytes], None],
        wait: float | None,
    ) -> Exit:
        """Run one command; ``on_output(is_stderr, data)`` gets its output as produced.

        Raises:
            ServerLost: before sending anything (the caller may still run the command elsewhere).
            ConnectionError: the server stopped answering mid-command, or took longer than ``wait``.
        """
        conn = self._connect(self.path)
        try:
            try:
                peer = self._peer(conn)
            except ServerLost:
                peer = None
            if peer != self._server:
                raise ServerLost(f"{self.path} is no longer served by the server started with the container")
            header = {"argv": list(argv), "env": dict(env), "cwd": cwd, "timeout": timeout, "merge": merge}
            header["stdin"] = None if stdin is None else len(stdin)
            conn.settimeout(wait)
            conn.sendall(json.dumps(header).encode() + b"\n" + (stdin or b""))
            while True:
                kind, size = _FRAME.unpack(_recv_exact(conn, _FRAME.size))
                payload = _recv_exact(conn, size)
                if kind == _EXIT:
                    result = json.loads(payload)
                    return Exit(int(result["returncode"]), bool(result["timed_out"]))
                on_output(kind == _STDERR, payload)
        except TimeoutError:
            raise ConnectionError(f"no answer from {self.path} within {wait:.0f}s") from None
        finally:
            conn.close()  # early (Ctrl-C): the server kills the command


if __name__ == "__main__":
    serve(sys.argv[1])
