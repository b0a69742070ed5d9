"""Hidden-test scoring: run the task's tests in the sandbox and read per-test results from JUnit XML.

Test ids are pytest node ids (``tests/test_x.py::TestA::test_b[1]``) or a bare file path,
which stands for "every test in that file" (OneShot's inline ``test_scripts``). A test the
run did not report (deleted, not collected, crashed run) is ``missing``; a skipped or
xfailed fail-to-pass test is not a pass. The exit code is cross-checked with the XML.
"""

from __future__ import annotations

import secrets
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from pytest_oneshot.sandbox import Sandbox
from pytest_oneshot.task import TaskSpec

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


def graded_tests(spec: TaskSpec) -> list[GradedTest]:
    """The task's fail-to-pass and pass-to-pass tests, plus OneShot test_scripts as whole-file tests."""
    tests = [GradedTest(test_id, "fail_to_pass", spec.tests.rubric_id) for test_id in spec.tests.fail_to_pass]
    tests += [GradedTest(test_id, "pass_to_pass", spec.tests.rubric_id) for test_id in spec.tests.pass_to_pass]
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
    timed_out: bool = False
    problem: str | None = None
    """Why the results cannot be fully trusted (crash, inconsistency, timeout)."""

    def count(self, kind: TestKind, status: TestStatus = "passed") -> int:
        return sum(1 for test_id, k in self.kinds.items() if k == kind and self.statuses[test_id] == status)

    def total(self, kind: TestKind) -> int:
        return sum(1 for k in self.kinds.values() if k == kind)

    @property
    def resolved(self) -> bool:
        """Every fail-to-pass test passes (there is at least one) and no pass-to-pass test regressed."""
        return self.total("fail_to_pass") > 0 and all(status == "passed" for status in self.statuses.values())


def _junit_key(test_id: str) -> tuple[str, str]:
    """pytest node id -> (classname, name) as pytest's junitxml writes them."""
    path, *rest = test_id.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    if not rest:
        return module, ""
    return ".".join([module, *rest[:-1]]), rest[-1]


def parse_junit(xml: bytes) -> dict[tuple[str, str], TestStatus]:
    """(classname, name) -> worst status seen (a pass followed by a teardown error is an error)."""
    results: dict[tuple[str, str], TestStatus] = {}
    for case in ET.fromstring(xml).iter("testcase"):
        tags = {child.tag for child in case}
        status: TestStatus = (
            "error"
            if "error" in tags
            else "failed"
            if "failure" in tags
            else "skipped"
            if "skipped" in tags
            else "passed"
        )
        key = (case.get("classname", ""), case.get("name", ""))
        previous = results.get(key)
        if previous is None or _SEVERITY[status] > _SEVERITY[previous]:
            results[key] = status
    return results


def _status_of(test_id: str, results: dict[tuple[str, str], TestStatus]) -> TestStatus:
    classname, name = _junit_key(test_id)
    if name:
        return results.get((classname, name), "missing")
    in_file = [status for (cls, _), status in results.items() if cls == classname or cls.startswith(classname + ".")]
    if not in_file:
        return "missing"
    return max(in_file, key=_SEVERITY.__getitem__)


def _cross_check(exit_code: int, statuses: Iterable[TestStatus], reported: int) -> str | None:
    bad = any(status in ("failed", "error") for status in statuses)
    if exit_code == 0 and bad:
        return "the test command exited 0 but its report lists failures"
    if exit_code == 5 or reported == 0:
        return f"the test command ran no tests (exit code {exit_code})"
    if exit_code not in (0, 1):
        return f"the test command did not complete normally (exit code {exit_code})"
    return None


def run_hidden_tests(sandbox: Sandbox, spec: TaskSpec, log: Path) -> TestRun:
    """Run setup + the test command once over every file holding a graded test."""
    graded = graded_tests(spec)
    kinds = {test.id: test.kind for test in graded}
    for command in spec.tests.setup:
        sandbox.exec(["bash", "-c", command], timeout=spec.limits.tests_timeout_sec, output=log)
    report_path = f".oneshot-junit-{secrets.token_hex(8)}.xml"
    files = sorted({test.id.split("::", 1)[0] for test in graded})
    args = ["-p", "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml={report_path}", "-rA", *files]
    script = f"{spec.tests.command} {shlex.join(args)}"
    run = sandbox.exec(["bash", "-c", script], timeout=spec.limits.tests_timeout_sec, output=log)
    report = sandbox.exec(["sh", "-c", 'cat -- "$1" && rm -f -- "$1"', "sh", report_path], timeout=60)
    try:
        results = parse_junit(report.stdout) if report.ok else {}
    except ET.ParseError:
        results = {}
    statuses = {test_id: _status_of(test_id, results) for test_id in kinds}
    if run.timed_out:
        problem: str | None = f"tests timed out after {spec.limits.tests_timeout_sec:.0f}s"
    elif not results:
        problem = f"the test command produced no JUnit report (exit code {run.returncode}); see the test log"
    else:
        problem = _cross_check(run.returncode, results.values(), len(results))
    return TestRun(statuses=statuses, kinds=kinds, exit_code=run.returncode, timed_out=run.timed_out, problem=problem)
