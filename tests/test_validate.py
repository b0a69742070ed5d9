"""Task self-validation: ``--oneshot-validate`` items and ``oneshot check`` (the oracle must pass, nop
must fail, repeated oracle runs flag flaky fail_to_pass tests), on real trials in the local sandbox."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.validate import TaskValidation, flaky_tests

HIDDEN_ALWAYS_PASSES = "def test_zero():\n    pass\n\n\ndef test_add():\n    pass\n"


def _broken_tasks(make_task: Callable[..., Path], tasks: Path) -> None:
    """``nop-passes``: hidden tests that pass without any change; ``bad-oracle``: a reference diff that misses."""
    make_task(tasks / "nop-passes")
    (tasks / "nop-passes" / "tests" / "test_calc.py").write_text(HIDDEN_ALWAYS_PASSES)
    make_task(tasks / "bad-oracle")
    diff = tasks / "bad-oracle" / "diff.patch"
    diff.write_text(diff.read_text().replace("+    return a + b", "+    return a * b"))


def test_validate_adds_oracle_and_nop_items(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    make_task(pytester.path / "tasks" / "calc")
    _broken_tasks(make_task, pytester.path / "tasks")
    run = run_and_parse(
        "tasks",
        "--oneshot-agent=nop",
        "--oneshot-validate",
        "--oneshot-validate-runs=2",
        "-m",
        "oneshot_validate",
        "-rA",
    )
    outcomes = {report.nodeid.rpartition("::")[2]: report.outcome for report in _reports(run.result)}
    assert outcomes == {
        "bad-oracle[validate-oracle-r0]": "failed",
        "bad-oracle[validate-oracle-r1]": "failed",
        "bad-oracle[validate-nop-r0]": "passed",
        "calc[validate-oracle-r0]": "passed",
        "calc[validate-oracle-r1]": "passed",
        "calc[validate-nop-r0]": "passed",
        "nop-passes[validate-oracle-r0]": "passed",
        "nop-passes[validate-oracle-r1]": "passed",
        "nop-passes[validate-nop-r0]": "failed",
    }
    run.result.stdout.fnmatch_lines(
        [
            "*= oneshot task validation =*",
            "bad-oracle: INVALID: oracle: the reference solution does not pass (failed): not resolved:*",
            "calc: VALID",
            "nop-passes: INVALID: nop: the hidden tests pass without any change, so they grade nothing:*",
        ]
    )
    assert "calc[nop-r0]" not in run.result.stdout.str()  # deselected by -m: the agent's own items are apart


def _reports(result: pytest.RunResult) -> list[Any]:
    """(nodeid, outcome) of every item from pytest's -rA short summary lines."""

    class Report:
        def __init__(self, line: str) -> None:
            self.outcome, _, rest = line.partition(" ")
            self.outcome = self.outcome.lower()
            self.nodeid = rest.split(" - ")[0]

    lines = [line for line in result.outlines if line.startswith(("PASSED ", "FAILED ", "ERROR "))]
    return [Report(line) for line in lines]


def test_oneshot_check_gives_a_readable_verdict_and_exit_status(
    pytester: pytest.Pytester, make_task: Callable[..., Path]
) -> None:
    tasks = pytester.path / "tasks"
    make_task(tasks / "calc")
    _broken_tasks(make_task, tasks)

    def check(*names: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pytest_oneshot.cli", "check", *(str(tasks / n) for n in names), "--runs", "2"]
        argv += ["--runs-dir", str(pytester.path / "runs")]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    valid = check("calc")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.splitlines()[-1] == "calc: VALID"
    assert valid.stdout.count("  oracle passed") == 2 and "  nop    failed" in valid.stdout
    invalid = check("calc", "nop-passes")
    assert invalid.returncode == 1, invalid.stdout + invalid.stderr
    assert "nop-passes: INVALID: nop: the hidden tests pass without any change" in invalid.stdout
    (tasks / "calc" / "tb_meta.json").write_text("{")
    malformed = check("calc")
    assert malformed.returncode == 1 and "calc: INVALID: " in malformed.stdout and "not valid JSON" in malformed.stdout


def test_flaky_fail_to_pass_tests_are_named() -> None:
    kinds = {"t::a": "fail_to_pass", "t::b": "fail_to_pass", "t::c": "pass_to_pass"}
    runs = [
        {"t::a": "passed", "t::b": "passed", "t::c": "passed"},
        {"t::a": "failed", "t::b": "passed", "t::c": "failed"},
    ]
    assert flaky_tests(runs, kinds) == ["t::a"]  # c is pass_to_pass: not a fail_to_pass flake
    validation = TaskValidation("calc")
    for statuses in runs:
        outcome = "passed" if all(status == "passed" for status in statuses.values()) else "failed"
        tests = {"statuses": statuses, "kinds": kinds}
        validation.results.append(("oracle", {"outcome": outcome, "reason": "", "tests": tests}))
    validation.results.append(("nop", {"outcome": "failed", "reason": "not resolved"}))
    assert validation.problems() == [
        "oracle: the reference solution does not pass (failed): ",
        "flaky fail_to_pass tests under the oracle: t::a",
    ]
