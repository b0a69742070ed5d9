"""Validate the tests a session added or changed: they must fail at the start state and pass at the end.

Both runs happen in throwaway copies of the private snapshot refs (``git archive``), never in the
user's tree: the end state as it was, and the start state with the session's test files written
over it (what scoring will do). Per-test outcomes come from a tiny pytest plugin, so the ids that
go into ``tests.fail_to_pass`` / ``pass_to_pass`` are pytest's own node ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from mcp_server.gitrepo import GitRepo

TEST_TIMEOUT_SEC: Final = 300.0
_PLUGIN: Final = """
import json, os

def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        with open(os.environ["ONESHOT_CAPTURE_RESULTS"], "a") as out:
            out.write(json.dumps({"id": report.nodeid, "when": report.when, "outcome": outcome}) + "\\n")

def pytest_collectreport(report):
    if report.failed:
        with open(os.environ["ONESHOT_CAPTURE_RESULTS"], "a") as out:
            out.write(json.dumps({"id": report.nodeid, "when": "collect", "outcome": "error"}) + "\\n")
"""
Status = Literal["validated", "no_tests", "no_fail_to_pass", "failing_at_end", "error"]


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def is_test_support(path: str) -> bool:
    """Files the tests need as they were written in the session (scored as hidden files too)."""
    return is_test_file(path) or PurePosixPath(path).name == "conftest.py"


@dataclass
class Validation:
    """What the session's tests did at each state, and the graded ids that follow from it."""

    status: Status
    message: str
    test_files: list[str] = field(default_factory=list)
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    start: dict[str, str] = field(default_factory=dict)
    end: dict[str, str] = field(default_factory=dict)
    python: str = ""

    def record(self) -> dict[str, Any]:
        """The ``validation`` block of ``tb_meta.json``."""
        return {
            "status": self.status,
            "message": self.message,
            "test_files": self.test_files,
            "python": self.python,
            "start_outcomes": self.start,
            "end_outcomes": self.end,
        }


def test_python(repo: GitRepo) -> str:
    """The interpreter that runs the repo's tests: ``$ONESHOT_CAPTURE_PYTHON``, the repo's ``.venv``, or ours."""
    if chosen := os.environ.get("ONESHOT_CAPTURE_PYTHON"):
        return chosen
    venv = repo.toplevel / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def _outcomes(results: Path) -> dict[str, str]:
    """Node id -> passed / failed / skipped / error (the worst phase wins)."""
    rank = {"passed": 0, "skipped": 1, "xfailed": 1, "failed": 2, "error": 3}
    found: dict[str, str] = {}
    if not results.is_file():
        return found
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        outcome = "error" if row["when"] != "call" and row["outcome"] == "failed" else row["outcome"]
        if rank.get(outcome, 3) >= rank.get(found.get(row["id"], "passed"), 0):
            found[row["id"]] = outcome
    return found


def _run(python: str, tree: Path, files: list[str], scratch: Path, label: str) -> tuple[dict[str, str], str]:
    """Run pytest on ``files`` in ``tree``; per-id outcomes and the output's tail."""
    plugin_dir = scratch / "plugin"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / "_oneshot_capture_results.py").write_text(_PLUGIN, encoding="utf-8")
    results = scratch / f"{label}.jsonl"
    env = {
        **os.environ,
        "ONESHOT_CAPTURE_RESULTS": str(results),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [python, "-m", "pytest", "-p", "_oneshot_capture_results", "-p", "no:cacheprovider", "-q", "--", *files]
    try:
        proc = subprocess.run(
            argv, cwd=tree, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_SEC, stdin=subprocess.DEVNULL
        )
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        tail = [f"timed out after {TEST_TIMEOUT_SEC:.0f}s"]
    except OSError as exc:
        tail = [f"could not run {python}: {exc}"]
    return _outcomes(results), " ".join(tail)


def validate(repo: GitRepo, start_sha: str, end_sha: str, changed: list[str]) -> Validation:
    """Run the session's test files at the start state (with the session's tests) and at the end state."""
    support = [path for path in changed if is_test_support(path)]
    files = [path for path in support if is_test_file(path)]
    python = test_python(repo)
    if not files:
        return Validation("no_tests", "the session added or changed no test file (test_*.py, *_test.py)", python=python)
    with tempfile.TemporaryDirectory(prefix="oneshot-validate-") as tmp:
        scratch = Path(tmp)
        end_tree = repo.export(end_sha, scratch / "end")
        start_tree = repo.export(start_sha, scratch / "start")
        for path in support:
            (start_tree / path).parent.mkdir(parents=True, exist_ok=True)
            (start_tree / path).write_bytes((end_tree / path).read_bytes())
        end, end_tail = _run(python, end_tree, files, scratch, "end")
        start, _ = _run(python, start_tree, files, scratch, "start")
    passed = [test_id for test_id, outcome in end.items() if outcome == "passed" and "::" in test_id]
    fail_to_pass = [test_id for test_id in passed if start.get(test_id) != "passed"]
    pass_to_pass = [test_id for test_id in passed if start.get(test_id) == "passed"]
    failing = sorted(test_id for test_id, outcome in end.items() if outcome != "passed")
    result = Validation("validated", "", files, fail_to_pass, pass_to_pass, start, end, python)
    if not end:
        result.status, result.message = "error", f"the session's tests did not run at the end state: {end_tail}"
    elif failing:
        result.status = "failing_at_end"
        result.message = f"not passing at the end state (left out of the graded ids): {', '.join(failing[:10])}"
    if not fail_to_pass and end:
        result.status = "no_fail_to_pass"
        result.message = (
            "no test fails at the start state: the session's tests already pass without its change, "
            "so they cannot tell a solution from doing nothing; add a test that fails before the change"
        )
    return result
