"""Capped logs: the first and last MiB of what an agent (or its code under the tests) prints.

A line in between says how much was dropped.

An agent may print without end, and its log must not fill the disk. Sandboxes write ``output=`` to a
host path, so the cap sits behind a pipe at that path: every backend (a subprocess's fd, the docker
exec server, ``docker exec``) opens and writes it as a file, and a reader thread keeps head and tail.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEAD_BYTES = 1 << 20
TAIL_BYTES = 1 << 20
DRAIN_SEC = 5.0
"""How long output may keep coming after the command returned (a process that escaped the kill)."""


class _Pump:
    """Reads the pipe; writes the head through at once (kept if the run is killed), the tail at the end."""

    def __init__(self, fd: int, dest: Path, head: int, tail: int) -> None:
        self.fd, self.head, self.tail = fd, head, tail
        self.out = open(dest, "ab")  # noqa: SIM115 - closed by finish()
        self.head_left = head
        self.last = b"\n"
        self.buffer = bytearray()
        self.dropped = 0
        self.deadline: float | None = None
        """Set once the command returned: read until EOF or this time, whichever comes first."""

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while self.deadline is None or time.monotonic() < self.deadline:
            if not poller.poll(100):
                continue
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:  # every writer closed, the harness's own included: the command is done
                return
            try:
                self._feed(chunk)
            except OSError:  # e.g. disk full: keep draining, or the agent would block on a full pipe
                self.head_left = 0

    def _feed(self, chunk: bytes) -> None:
        if self.head_left:
            part = chunk[: self.head_left]
            self.out.write(part)
            self.out.flush()
            self.head_left -= len(part)
            self.last = part[-1:]
            chunk = chunk[len(part) :]
        if chunk:
            self.buffer += chunk
            if len(self.buffer) > 2 * self.tail:
                self._trim()

    def _trim(self) -> None:
        cut = len(self.buffer) - self.tail
        if cut > 0:
            self.dropped += cut
            del self.buffer[:cut]

    def finish(self) -> None:
        self._trim()
        with contextlib.suppress(OSError):  # e.g. disk full (the command's own doing): the log keeps what fit
            if self.dropped:
                marker = (
                    f"[oneshot: {self.dropped} bytes of output dropped here; the log keeps the first "
                    f"{self.head} and the last {self.tail} bytes]\n"
                )
                self.out.write((b"" if self.last == b"\n" else b"\n") + marker.encode())
            self.out.write(bytes(self.buffer))
            self.out.flush()
        with contextlib.suppress(OSError):  # closed even when its buffer cannot be written
            self.out.close()


@contextmanager
def capped_output(dest: Path, *, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> Iterator[Path]:
    """Yield a path to pass as ``Sandbox.exec(output=...)``; on exit ``dest`` holds the capped output.

    The path is a pipe's ``/proc`` link, not a file: a killed run leaves no FIFO or temp dir behind.
    """
    reader, keeper = os.pipe()  # the harness keeps a write end: no EOF before the command's writers open it
    os.set_blocking(reader, False)
    try:
        pump = _Pump(reader, dest, head, tail)
        thread = threading.Thread(target=pump.run, name=f"oneshot-log-{dest.name}", daemon=True)
        thread.start()
        try:
            yield Path(f"/proc/{os.getpid()}/fd/{keeper}")
        finally:
            os.close(keeper)
            keeper = -1
            pump.deadline = time.monotonic() + DRAIN_SEC
            thread.join()
            pump.finish()
    finally:
        if keeper != -1:
            os.close(keeper)
        os.close(reader)
