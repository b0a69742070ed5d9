"""Running one command to its end, for every backend: stdin fed, output kept or streamed to a host
file as produced, and at the timeout (or on Ctrl-C) the command's whole process tree killed, keeping
what it printed. Only how a command is started and how its tree is found differ between a host
process (:func:`run_process`), an engine exec (:mod:`docker_exec`) and an image build; the waiting,
killing and giving up are written once, in :func:`drive`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pytest_oneshot.sandbox import ExecResult

KILL_GRACE_SEC = 10.0
"""After the kill, how long the output may take to end before the command is given up on."""
MARKER = "ONESHOT_EXEC"
"""Environment variable marking a host command's processes, so its tree is found even after a
``setsid`` or a double fork took them out of its session and away from its parent."""

OnOutput = Callable[[bool, bytes], None]
"""``on_output(is_stderr, data)``: a chunk of output as produced."""


@dataclass(frozen=True)
class Running:
    """A started command, as :func:`drive` sees it."""

    readers: Sequence[Callable[[OnOutput], None]]
    """Each forwards one output stream until it ends (none when the output goes straight to a file)."""
    wait: Callable[[float | None], bool]
    """Wait up to that many seconds (None: for ever) for the command to exit; whether it has."""
    returncode: Callable[[], int]
    """The exit status once it has exited (or was given up on)."""
    kill_tree: Callable[[], None]
    """Kill the command and every process it started."""
    abandon: Callable[[], None]
    """Stop waiting: end the readers and :attr:`wait` even if something still holds the output open."""
    feed: Callable[[bytes], None] | None = None
    """Write the command's stdin and close it."""


class Sink:
    """Where a command's output goes: kept in memory, stdout and stderr apart, or appended to a host
    file (both streams merged in the order they arrive) when ``output`` is given."""

    def __init__(self, output: Path | None) -> None:
        self.file = open(output, "ab", buffering=0) if output else None  # noqa: SIM115 - closed by close()
        self._parts: dict[bool, list[bytes]] = {False: [], True: []}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, is_stderr: bool, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return  # a reader given up on, still draining what an escaped process prints
            if self.file is not None:
                self.file.write(data)
            else:
                self._parts[is_stderr].append(data)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.file is not None:
                self.file.close()

    def result(self, returncode: int, timed_out: bool, started: float) -> ExecResult:
        stdout, stderr = b"".join(self._parts[False]), b"".join(self._parts[True])
        return ExecResult(returncode, stdout, stderr, timed_out, time.monotonic() - started)


def drive(
    running: Running,
    *,
    stdin: bytes | None,
    timeout: float | None,
    on_output: OnOutput,
    grace: float = KILL_GRACE_SEC,
    heartbeat: tuple[float, Callable[[float], None]] | None = None,
) -> bool:
    """Feed, forward and wait until the command has exited and its output ended; return whether it
    timed out. ``heartbeat`` = (seconds, callback(elapsed)) while it runs (a long build shows progress)."""
    readers = [threading.Thread(target=read, args=(on_output,), daemon=True) for read in running.readers]
    for thread in readers:
        thread.start()
    if stdin is not None and running.feed is not None:  # not waited for: the command may never read it
        threading.Thread(target=running.feed, args=(stdin,), daemon=True).start()
    started = time.monotonic()

    def ended(within: float | None) -> bool:
        deadline = None if within is None else time.monotonic() + within
        for thread in readers:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                return False
        return running.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))

    deadline = None if timeout is None else started + timeout
    try:
        while True:
            step = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if heartbeat is not None:
                step = heartbeat[0] if step is None else min(step, heartbeat[0])
            if ended(step):
                return False
            if deadline is not None and time.monotonic() >= deadline:
                break
            if heartbeat is not None:
                heartbeat[1](time.monotonic() - started)
        running.kill_tree()
        if not ended(grace):  # a process that escaped the kill holds the output open
            running.abandon()
            running.wait(None)
        return True
    except BaseException:  # Ctrl-C: end the command too, wherever it runs
        running.kill_tree()
        running.abandon()
        raise


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
    output: Path | None = None,
    kill_tree: Callable[[], None] | None = None,
    heartbeat: tuple[float, Callable[[float], None]] | None = None,
) -> ExecResult:
    """Run a host command in a session of its own; at the timeout ``kill_tree`` (default: every process
    of its session, below it, or carrying its :data:`MARKER`). A command that cannot start is a result,
    as a shell reports it: 127 not found, 126 not runnable."""
    started = time.monotonic()
    marker = f"{env.get(MARKER, '')}/{os.urandom(8).hex()}"
    sink = Sink(output)
    try:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**env, MARKER: marker},
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=sink.file or subprocess.PIPE,
                stderr=subprocess.STDOUT if sink.file else subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            sink.write(True, f"{argv[0]}: {exc.strerror or exc}\n".encode())
            return sink.result(127 if isinstance(exc, FileNotFoundError) else 126, False, started)
        running = Running(
            readers=[_reader(pipe, err) for pipe, err in ((proc.stdout, False), (proc.stderr, True)) if pipe],
            wait=lambda within: _wait(proc, within),
            returncode=lambda: proc.returncode,
            kill_tree=kill_tree or (lambda: kill_host_tree(proc.pid, marker)),
            abandon=proc.kill,
            feed=lambda data: _feed(proc, data),
        )
        timed_out = drive(running, stdin=stdin, timeout=timeout, on_output=sink.write, heartbeat=heartbeat)
    finally:
        sink.close()
    return sink.result(proc.returncode, timed_out, started)


def _reader(pipe: IO[bytes], is_stderr: bool) -> Callable[[OnOutput], None]:
    def read(on_output: OnOutput) -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), 65536):
                on_output(is_stderr, chunk)

    return read


def _wait(proc: subprocess.Popen[bytes], within: float | None) -> bool:
    try:
        proc.wait(within)
    except subprocess.TimeoutExpired:
        return False
    return True


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # the command exited without reading it all
        proc.stdin.write(data)
        proc.stdin.close()


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, session)`` of a live process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[3])


def _marked(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return any(entry.startswith(marker) for entry in file.read().split(b"\0"))
    except OSError:  # gone, or another user's
        return False


def kill_host_tree(root: int | None, marker: str) -> None:
    """SIGKILL ``root`` (a session leader) and every process below it, in its session, or whose
    :data:`MARKER` starts with ``marker``; each is stopped as soon as found, so none forks away first."""
    prefix = f"{MARKER}={marker}".encode()
    found: set[int] = set()
    if root is not None and _stat(root) is not None:
        found.add(root)
        _signal(root, signal.SIGSTOP)
    spare = {os.getpid(), 1}
    changed = True
    while changed:
        changed = False
        for name in os.listdir("/proc"):
            pid = int(name) if name.isdigit() else 0
            if not pid or pid in found or pid in spare:
                continue
            stat = _stat(pid)
            if stat is not None and (stat[0] in found or stat[1] == root or _marked(pid, prefix)):
                found.add(pid)
                _signal(pid, signal.SIGSTOP)
                changed = True
    for pid in found:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.kill(pid, signum)
