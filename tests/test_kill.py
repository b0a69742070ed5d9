"""A run killed with SIGKILL cleans nothing up: its run dir still says what happened, and the next
session removes the local sandbox it left behind. Ctrl-C stops the agent's commands at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.owner import OWNER_FILE, Owner, remove_dead_dirs
from tests.polling import as_from_a_terminal


def _sandbox_dirs_of(pid: int) -> list[Path]:
    return [
        root
        for root in Path(tempfile.gettempdir()).glob("oneshot-*")
        if (owner := Owner.of(root)) is not None and owner.pid == pid
    ]


def _run_until_agent_starts(pytester: pytest.Pytester) -> tuple[subprocess.Popen[bytes], Path]:
    """A pytest run whose agent sleeps for 300 s, once the agent runs; and the agent's log."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tasks", "--oneshot-agent=command"]
    argv.append("--oneshot-agent-cmd=echo agent-started; sleep 300")
    run = pytester.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_from_a_terminal)
    deadline = time.monotonic() + 120  # a wait for the agent to start, not a timing assertion
    while time.monotonic() < deadline and run.poll() is None:
        logs = list(pytester.path.glob("runs/*/fix-add__command-r0/agent/agent.log"))
        if logs and b"agent-started" in logs[0].read_bytes():
            return run, logs[0]
        time.sleep(0.2)
    run.kill()
    pytest.fail("the run never reached its agent phase")


def test_ctrl_c_stops_the_agent_and_removes_the_sandbox(
    make_task: Callable[..., Path], pytester: pytest.Pytester
) -> None:
    """The trial runs in a pool thread, which Ctrl-C does not reach: the session's end must stop
    the agent's command (300 s of sleep) and remove its sandbox, not wait for it."""
    make_task(pytester.path / "tasks" / "fix-add")
    run, _ = _run_until_agent_starts(pytester)
    left = _sandbox_dirs_of(run.pid)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
    assert left and not any(root.exists() for root in left)


def test_sigkill_leaves_an_interrupted_result_and_the_next_session_removes_the_sandbox(
    make_task: Callable[..., Path], pytester: pytest.Pytester
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    run, log = _run_until_agent_starts(pytester)
    logs = [log]
    left = _sandbox_dirs_of(run.pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert left and all(root.is_dir() for root in left), "SIGKILL leaves the sandbox dir: only the next session can"

    result = json.loads((logs[0].parent.parent / "evaluation_results.json").read_text())
    assert (result["outcome"], result["reason"]) == ("error", "interrupted: the run stopped during the agent phase")
    assert list(result["phases"]) == ["prepare", "sandbox"]

    pytester.runpytest_subprocess("--collect-only", "tasks")  # session start removes what dead runs left
    assert not any(root.exists() for root in left)


def test_a_dead_runs_dir_nested_deeper_than_python_recurses_is_removed(tmp_path: Path) -> None:
    """An agent can nest its dirs deeper than Python's recursion limit (shutil.rmtree's): the dir is
    removed all the same, never a RecursionError out of the harness (an error for every next session)."""
    litter = tmp_path / "oneshot-dead"
    litter.mkdir()
    dead = Owner(socket.gethostname(), "another-boot", os.getpid(), "0")
    (litter / OWNER_FILE).write_text(json.dumps(dead.labels()))
    parent = os.open(litter, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(sys.getrecursionlimit() + 100):
        os.mkdir("d", dir_fd=parent)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
        os.close(parent)
        parent = child
    os.close(parent)
    assert remove_dead_dirs(tmp_path, "oneshot-") == [str(litter)]
    assert not litter.exists()
