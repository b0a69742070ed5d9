"""Hidden-test scoring: run the graded tests in the scoring sandbox and read per-test results.

Test ids are pytest node ids (``tests/test_x.py::TestA::test_b[1]``) or a bare file path,
which stands for "every test in that file" (OneShot's inline ``test_scripts``). Only graded
tests run: node ids go to pytest as node ids. pytest runs through :mod:`launcher` with the
start commit's config (``-c``, ``--rootdir``), which records each test's worst outcome. A test
the run did not report (deleted, not collected, crashed run) is ``missing``; a skipped or
xfailed fail-to-pass test is not a pass. When the run cannot be trusted (no results, exit
status and results disagree, a setup command failed, a timeout) the result carries a
``problem`` and nothing in it counts as passed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel

from pytest_oneshot.logcap import capped_output
from pytest_oneshot.sandbox import Sandbox
from pytest_oneshot.scoring.pytest_config import StartConfig
from pytest_oneshot.task import TaskSpec
from pytest_oneshot.task_tests import parse_tests_command

TestStatus = Literal["passed", "failed", "error", "skipped", "missing"]
TestKind = Literal["fail_to_pass", "pass_to_pass"]
_SEVERITY: dict[str, int] = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass(frozen=True)
class GradedTest:
    """One test the verdict depends on, and the rubric its result counts towards."""

    __test__ = False
    id: str
    kind: TestKind
    rubric_id: str | None


WHOLE_COMMAND = "tests.command"
"""The one graded test of the exit_code and reward modes: the whole command."""


def graded_tests(spec: TaskSpec) -> list[GradedTest]:
    """The task's fail-to-pass and pass-to-pass tests, plus OneShot test_scripts as whole-file tests
    (pytest mode); the report's test ids (junit, ctrf); the whole command (exit_code, reward)."""
    if spec.tests.mode in ("exit_code", "reward"):
        return [GradedTest(WHOLE_COMMAND, "fail_to_pass", spec.tests.rubric_id)]
    tests = [GradedTest(test_id, "fail_to_pass", spec.tests.rubric_id) for test_id in spec.tests.fail_to_pass]
    tests += [GradedTest(test_id, "pass_to_pass", spec.tests.rubric_id) for test_id in spec.tests.pass_to_pass]
    if spec.tests.mode != "pytest":
        return tests
    listed = {test.id.split("::", 1)[0] for test in tests}
    for script in spec.evaluation.test_scripts:
        if script.path not in listed:
            tests.append(GradedTest(script.path, "fail_to_pass", script.rubric_id))
    return tests


class TestRun(BaseModel):
    """What the hidden-test phase found."""

    __test__ = False
    statuses: dict[str, TestStatus]
    kinds: dict[str, TestKind]
    exit_code: int | None
    selected: list[str] = []
    """What was passed to pytest: node ids, or whole files where a bare file path is graded."""
    timed_out: bool = False
    problem: str | None = None
    """Why the results cannot be fully trusted (crash, inconsistency, timeout)."""
    reward: float | None = None
    """The reward the command wrote (reward mode), in [0, 1]; its rubric's score."""

    def count(self, kind: TestKind, status: TestStatus = "passed") -> int:
        return sum(1 for test_id, k in self.kinds.items() if k == kind and self.statuses[test_id] == status)

    def total(self, kind: TestKind) -> int:
        return sum(1 for k in self.kinds.values() if k == kind)

    def passed(self, test_id: str) -> bool:
        """Whether ``test_id`` passed in a run that can be trusted."""
        return self.problem is None and self.statuses.get(test_id) == "passed"

    @property
    def resolved(self) -> bool:
        """Every fail-to-pass test passes (there is at least one) and no pass-to-pass test regressed."""
        return self.total("fail_to_pass") > 0 and all(self.passed(test_id) for test_id in self.statuses)

    def failing(self, limit: int = 10) -> str:
        """Every graded test that did not pass, as ``id status``, or the first ``limit`` and "and N more"."""
        bad = [f"{test_id} {status}" for test_id, status in self.statuses.items() if status != "passed"]
        shown = ", ".join(bad[:limit])
        return shown + (f" and {len(bad) - limit} more" if len(bad) > limit else "")


LAUNCHER = Path(__file__).with_name("launcher.py")


def graded_files(spec: TaskSpec) -> list[str]:
    """The files holding graded tests (workdir-relative; pytest mode: other modes' ids name no file)."""
    if spec.tests.mode != "pytest":
        return []
    return sorted({test.id.split("::", 1)[0] for test in graded_tests(spec)})


def selection(graded: list[GradedTest]) -> list[str]:
    """pytest arguments running exactly the graded tests: a bare file stands for all of its tests."""
    whole_files = {test.id for test in graded if "::" not in test.id}
    chosen = [test.id for test in graded if "::" not in test.id or test.id.split("::", 1)[0] not in whole_files]
    return list(dict.fromkeys(chosen))


_RECORDED: dict[str, TestStatus] = {"passed": "passed", "skipped": "skipped", "failed": "failed", "error": "error"}


def _status_of(test_id: str, results: dict[str, str]) -> TestStatus:
    if "::" in test_id:
        return _RECORDED.get(results.get(test_id, ""), "missing")
    in_file = [_RECORDED.get(status, "missing") for key, status in results.items() if key.split("::", 1)[0] == test_id]
    if not in_file or "missing" in in_file:
        return "missing"
    return max(in_file, key=_SEVERITY.__getitem__)


def _cross_check(exit_code: int, recorded: dict[str, object], results: dict[str, str]) -> str | None:
    """Why the run's results cannot be trusted, or None."""
    bad = any(status in ("failed", "error") for status in results.values())
    if recorded.get("exitstatus") != exit_code:
        return f"pytest's recorded exit status {recorded.get('exitstatus')} is not the command's exit code {exit_code}"
    if exit_code == 5 or not results:
        return f"the test command ran no tests (exit code {exit_code})"
    if exit_code not in (0, 1):
        return f"the test command did not complete normally (exit code {exit_code})"
    if exit_code == 0 and bad:
        return "the test command exited 0 but its results list failures"
    if exit_code == 1 and not bad:
        return "the test command exited 1 but its results list no failure"
    return None


def _abs(root: str, relative: str) -> str:
    return str(PurePosixPath(root, relative)) if relative else root


def run_hidden_tests(sandbox: Sandbox, spec: TaskSpec, root: str, config: StartConfig, log: Path) -> TestRun:
    """Run ``tests.setup`` and then the graded tests, once, in the scored tree at ``root`` (output to
    ``log``, head and tail kept: the agent's code prints there too)."""
    with capped_output(log) as capped:
        return _run(sandbox, spec, root, config, capped)


def untrusted(
    spec: TaskSpec, problem: str, exit_code: int | None = None, timed_out: bool = False, selected: Sequence[str] = ()
) -> TestRun:
    """A run whose results cannot be trusted: every graded test ``missing``, the reason in ``problem``."""
    kinds = {test.id: test.kind for test in graded_tests(spec)}
    statuses: dict[str, TestStatus] = dict.fromkeys(kinds, "missing")
    return TestRun(statuses=statuses, kinds=kinds, exit_code=exit_code, selected=list(selected), timed_out=timed_out,
                   problem=problem)  # fmt: skip


def run_setup(sandbox: Sandbox, spec: TaskSpec, log: Path) -> TestRun | None:
    """Run ``tests.setup`` (the agent's code may run under it); an untrusted run if a command failed."""
    for command in spec.tests.setup:
        result = sandbox.exec(["bash", "-c", command], timeout=spec.limits.tests_timeout_sec, output=log)
        if not result.ok:
            how = "timed out" if result.timed_out else f"failed (exit {result.returncode})"
            return untrusted(spec, f"tests.setup `{command}` {how}; see tests.log", result.returncode,
                             result.timed_out)  # fmt: skip
    return None


def _run(sandbox: Sandbox, spec: TaskSpec, root: str, config: StartConfig, log: Path) -> TestRun:
    graded = graded_tests(spec)
    kinds = {test.id: test.kind for test in graded}
    chosen = selection(graded)
    timeout = spec.limits.tests_timeout_sec

    def untrusted_run(problem: str, exit_code: int | None = None, timed_out: bool = False) -> TestRun:
        return untrusted(spec, problem, exit_code, timed_out, chosen)

    failed_setup = run_setup(sandbox, spec, log)
    if failed_setup is not None:
        return failed_setup.model_copy(update={"selected": chosen})
    pytest_command = parse_tests_command(spec.tests.command)
    results_path = f"~/.oneshot/results-{secrets.token_hex(8)}.json"
    argv = [pytest_command.python, "-I", "-S", "-B", "-c", LAUNCHER.read_text(), *pytest_command.args]
    argv += ["-c", _abs(root, config.effective_file), "--rootdir", _abs(root, config.rootdir)]
    argv += [
        "-p",
        "no:cacheprovider",
        "-p",
        "no:oneshot",
        "-rA",
        *chosen,
    ]  # this plugin is inert there: skip its import
    env = {**pytest_command.env, "ONESHOT_WORKSPACE": root, "ONESHOT_RESULTS": results_path}
    run = sandbox.exec(argv, env=env, timeout=timeout, output=log)
    if run.timed_out:
        return untrusted_run(f"tests timed out after {timeout:.0f}s", run.returncode, True)
    # At most 64 MiB: the code under test could write there too, and must not fill the harness's memory.
    read = sandbox.exec(["sh", "-c", f'head -c 67108864 -- "$HOME/{results_path[2:]}"'], timeout=60)
    try:
        recorded = json.loads(read.stdout) if read.ok else None
    except (ValueError, RecursionError):  # the code under test can write there: any bytes at all
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("statuses"), dict):
        return untrusted_run(f"the test command recorded no results (exit code {run.returncode}); see tests.log",
                         run.returncode)  # fmt: skip
    results = {str(key): str(value) for key, value in recorded["statuses"].items()}
    statuses = {test_id: _status_of(test_id, results) for test_id in kinds}
    problem = _cross_check(run.returncode, recorded, results)
    return TestRun(statuses=statuses, kinds=kinds, exit_code=run.returncode, selected=chosen, problem=problem)
