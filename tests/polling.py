"""Waiting for something a test started (a process, a file) without a timing assertion, and starting
a run so that it can be interrupted."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest


def wait_for(condition: Callable[[], bool], what: str, bound_sec: float = 60) -> None:
    """Wait (not a timing assertion: the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + bound_sec
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a run a test interrupts with SIGINT: a process started in the background
    inherits SIGINT ignored (POSIX), so Python would never raise KeyboardInterrupt; a terminal's
    Ctrl-C finds the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
