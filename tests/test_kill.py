"""A run killed with SIGKILL cleans nothing up: its run dir still says what happened, and the next
session removes the local sandbox it left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.owner import Owner


def _sandbox_dirs_of(pid: int) -> list[Path]:
    return [
        root
        for root in Path(tempfile.gettempdir()).glob("oneshot-*")
        if (owner := Owner.of(root)) is not None and owner.pid == pid
    ]


def test_sigkill_leaves_an_interrupted_result_and_the_next_session_removes_the_sandbox(
    make_task: Callable[..., Path], pytester: pytest.Pytester
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tasks", "--oneshot-agent=command"]
    run = pytester.popen([*argv, "--oneshot-agent-cmd=echo agent-started; sleep 300"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120  # a wait for the agent to start, not a timing assertion
    logs: list[Path] = []
    while time.monotonic() < deadline and run.poll() is None:
        logs = list(pytester.path.glob("runs/*/fix-add__command-r0/agent/agent.log"))
        if logs and b"agent-started" in logs[0].read_bytes():
            break
        time.sleep(0.2)
    else:
        run.kill()
        pytest.fail("the run never reached its agent phase")
    left = _sandbox_dirs_of(run.pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert left and all(root.is_dir() for root in left), "SIGKILL leaves the sandbox dir: only the next session can"

    result = json.loads((logs[0].parent.parent / "evaluation_results.json").read_text())
    assert (result["outcome"], result["reason"]) == ("error", "interrupted: the run stopped during the agent phase")
    assert list(result["phases"]) == ["prepare", "sandbox"]

    pytester.runpytest_subprocess("--collect-only", "tasks")  # session start removes what dead runs left
    assert not any(root.exists() for root in left)
