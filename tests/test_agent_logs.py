"""Agent logs are capped: an agent printing far more than the cap leaves its head, its tail and a marker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.logcap import HEAD_BYTES, TAIL_BYTES


def test_a_command_agent_printing_far_more_than_the_cap_keeps_head_and_tail(
    make_task: Callable[..., Path], run_and_parse: Callable[..., Any], pytester: Any
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    printed = 40 * (HEAD_BYTES + TAIL_BYTES)
    command = f"echo FIRST-LINE; head -c {printed} /dev/zero | tr '\\0' x; echo; echo LAST-LINE"
    run = run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={command}")
    log = Path(run.items()["fix-add[command-r0]"]["run_dir"], "agent", "agent.log").read_bytes()
    total = len("FIRST-LINE\n") + printed + len("\nLAST-LINE\n")
    dropped = total - HEAD_BYTES - TAIL_BYTES
    marker = f"[oneshot: {dropped} bytes of output dropped here; the log keeps the first {HEAD_BYTES} and the last "
    assert log.startswith(b"FIRST-LINE\nxxx") and log.endswith(b"xxx\nLAST-LINE\n")
    head, found, tail = log.partition(b"\n" + marker.encode())
    assert found and len(head) == HEAD_BYTES and len(tail.split(b"bytes]\n", 1)[1]) == TAIL_BYTES


def test_the_tests_log_keeps_head_and_tail_when_the_code_under_test_floods_it(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(pytester.path / "tasks" / "fix-add")
    # the agent's add() prints 8 MiB whenever it is called: pytest shows it in its report (-rA)
    fix = "sed -i 's/    return a - b/    print(\"y\" * (8 << 20))\\n    return a + b/' calc/__init__.py"
    run = run_and_parse(str(task.parent), "--oneshot-agent=command", f"--oneshot-agent-cmd={fix}")
    log = Path(run.items()["fix-add[command-r0]"]["run_dir"]) / "tests.log"
    assert log.stat().st_size < 3 << 20
    assert "bytes of output dropped here" in log.read_text(errors="replace")
