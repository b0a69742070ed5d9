"""Waiting for something a test started (a process, a file) without a timing assertion."""

from __future__ import annotations

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
