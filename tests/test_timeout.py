"""A hanging agent is stopped at the limit; what it did so far is still collected and scored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def test_hanging_agent_times_out_and_keeps_its_diff(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., object]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    hang = "echo working; echo partial > partial.txt; (sleep 300 &); sleep 300"
    run = run_and_parse(
        "tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={hang}", "--oneshot-timeout=2", timeout=120
    )
    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-add[command-r0]"]
    assert item["outcome"] == "timeout"
    assert item["agent"]["status"] == "timeout"
    assert item["changed_files"] == ["partial.txt"]
    run_dir = Path(item["run_dir"])
    assert "+partial" in (run_dir / "diff.patch").read_text()
    assert "working" in (run_dir / "agent" / "agent.log").read_text()
    assert item["tests"]["statuses"]["tests/test_calc.py::test_zero"] == "passed"  # scored after the timeout
    assert run.properties("fix-add")["oneshot.outcome"] == "timeout"


def test_task_limit_applies_without_cli_override(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., object]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add", limits={"agent_timeout_sec": 1})
    run = run_and_parse("tasks", "--oneshot-agent=command", "--oneshot-agent-cmd=sleep 300", timeout=120)
    assert run.items()["fix-add[command-r0]"]["outcome"] == "timeout"
