"""The non-pytest test modes without a sandbox: the task fields' one-line errors, the report parsers'
rules (a report that cannot be trusted is an error, never a pass) and the paths a command names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.scoring.commands import command_infrastructure, command_paths
from pytest_oneshot.scoring.reports import ReportError, parse_ctrf, parse_junit, parse_reward
from pytest_oneshot.scoring.tests import graded_tests
from pytest_oneshot.task import load_task


def _load(tmp_path: Path, tests: dict[str, Any]) -> Any:
    (tmp_path / "tb_meta.json").write_text(
        json.dumps({"task_id": "t", "repo": {"start_commit_sha": "a"}, "tests": tests})
    )
    return load_task(tmp_path)


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        ({"mode": "npm"}, "tests.mode: Input should be 'pytest', 'exit_code', 'reward', 'junit' or 'ctrf' (got 'npm')"),
        ({"mode": "reward"}, "tests.command: mode 'reward' needs the command that runs the tests"),
        ({"command": "npm test"}, "tests.command: must run pytest"),
        ({"mode": "reward", "command": "sh t.sh", "report": "/tmp/r.txt"}, "tests.report: an absolute path must lie"),
        ({"mode": "junit", "command": "sh t.sh", "report": "../j.xml"}, "tests.report: must name a file in the"),
        ({"mode": "exit_code", "command": "make", "report": "r.txt"}, "tests.report: mode 'exit_code' reads no report"),
        ({"report": "r.txt"}, "tests.report: only for modes reward, junit and ctrf"),
        ({"mode": "reward", "command": "sh t.sh", "fail_to_pass": ["a"]}, "tests.fail_to_pass: mode 'reward' grades"),
        ({"mode": "ctrf", "command": "sh t.sh"}, "tests.fail_to_pass: mode 'ctrf' needs the report's test ids"),
    ],
)
def test_bad_test_mode_fields_are_one_line_errors(tmp_path: Path, tests: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskFormatError) as excinfo:
        _load(tmp_path, tests)
    assert str(excinfo.value).startswith(f"{tmp_path / 'tb_meta.json'}: {message}"), str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_modes_grade_the_command_or_the_report_ids(tmp_path: Path) -> None:
    harbor = _load(tmp_path, {"mode": "reward", "command": "bash tests/test.sh", "report": "/logs/verifier/reward.txt"})
    assert [test.id for test in graded_tests(harbor.spec)] == ["tests.command"]
    assert harbor.spec.tests.report_file == "/logs/verifier/reward.txt"
    junit = _load(tmp_path, {"mode": "junit", "command": "go test", "fail_to_pass": ["pkg::TestAdd"]})
    assert [(test.id, test.kind) for test in graded_tests(junit.spec)] == [("pkg::TestAdd", "fail_to_pass")]
    assert junit.spec.tests.report_file == "junit.xml"


@pytest.mark.parametrize(
    ("data", "name", "reward"),
    [(b"1\n", "reward.txt", 1.0), (b" 0.25 ", "reward.txt", 0.25), (b"0", "reward.txt", 0.0),
     (b'{"reward": 0.5}', "reward.json", 0.5)],
)  # fmt: skip
def test_reward(data: bytes, name: str, reward: float) -> None:
    assert parse_reward(data, name) == reward


@pytest.mark.parametrize(
    ("data", "name", "problem"),
    [
        (b"", "reward.txt", "holds no number"),
        (b"yes", "reward.txt", "holds no number"),
        (b"1.5", "reward.txt", "outside [0, 1]"),
        (b"-0.1", "reward.txt", "outside [0, 1]"),
        (b"nan", "reward.txt", "outside [0, 1]"),
        (b"inf", "reward.txt", "outside [0, 1]"),
        (b'{"reward": true}', "reward.json", "holds no number"),
        (b'{"score": 1}', "reward.json", "holds no number"),
        (b"\xff", "reward.txt", "holds no number"),
    ],
)
def test_bad_reward_is_a_report_error(data: bytes, name: str, problem: str) -> None:
    with pytest.raises(ReportError, match=problem.replace("[", r"\[")):
        parse_reward(data, name)


JUNIT = b"""<?xml version="1.0"?>
<testsuites><testsuite name="s" tests="4" failures="1" errors="1" skipped="1">
<testcase classname="calc" name="adds"/>
<testcase classname="calc" name="subtracts"><failure message="no"/></testcase>
<testcase classname="calc" name="divides"><error/></testcase>
<testcase name="later"><skipped/></testcase>
</testsuite></testsuites>"""


def test_junit_statuses_by_name_and_classname() -> None:
    results, failed = parse_junit(JUNIT, "junit.xml")
    assert failed == 2
    assert results["calc::adds"] == results["adds"] == "passed"
    assert results["calc::subtracts"] == "failed" and results["divides"] == "error" and results["later"] == "skipped"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not xml", "is not XML"),
        (b"<html/>", "has no <testsuites> or <testsuite> root"),
        (JUNIT.replace(b'tests="4"', b'tests="5"'), "says tests=5 but lists 4"),
        (JUNIT.replace(b'failures="1"', b'failures="0"'), "says failures=0 but lists 1"),
        (b'<testsuite><testcase classname="x"/></testsuite>', "a testcase without a name"),
    ],
)
def test_bad_junit_is_a_report_error(data: bytes, problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        parse_junit(data, "junit.xml")


def _ctrf(cases: list[dict[str, Any]], **summary: int) -> bytes:
    return json.dumps({"results": {"tool": {"name": "t"}, "summary": summary, "tests": cases}}).encode()


def test_ctrf_statuses() -> None:
    data = _ctrf(
        [{"name": "a", "status": "passed", "suite": "s"}, {"name": "b", "status": "failed"},
         {"name": "c", "status": "pending"}, {"name": "d", "status": "other"}],
        tests=4, passed=1, failed=1,
    )  # fmt: skip
    results, failed = parse_ctrf(data, "ctrf.json")
    assert results == {"a": "passed", "s::a": "passed", "b": "failed", "c": "skipped", "d": "error"}
    assert failed == 2


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{}", "is not CTRF JSON"),
        (_ctrf([{"name": "a", "status": "passed"}], tests=2), "summary says tests=2 but lists 1"),
        (_ctrf([{"name": "a", "status": "passed"}], failed=1), "summary says failed=1 but lists 0"),
        (_ctrf([{"name": "a", "status": "great"}]), "without a name or a known status"),
        (_ctrf([{"status": "passed"}]), "without a name or a known status"),
    ],
)
def test_bad_ctrf_is_a_report_error(data: bytes, problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        parse_ctrf(data, "ctrf.json")


def test_files_the_command_names_are_test_infrastructure(tmp_path: Path) -> None:
    assert command_paths('CI=1 bash tests/run.sh --out="$ONESHOT_VERIFIER_DIR/x" ./check node t.js ../up /abs') == [
        "tests/run.sh", "check", "t.js",
    ]  # fmt: skip
    chained = "bash runtests && cd scripts && bash check.sh; bash -c 'sh ci/x.sh' | python3 -c 'import a.b'"
    assert command_paths(chained) == [
        "runtests", "scripts/check.sh", "scripts/ci/x.sh",
    ]  # fmt: skip
    assert command_paths("cd /elsewhere && sh check.sh") == [], "not a workspace path"
    task = _load(tmp_path, {"mode": "exit_code", "command": "sh run-checks.sh"})
    assert command_infrastructure(task.spec, ["test/add.test.js", "data/x.json"]) == [
        "data/x.json", "run-checks.sh", "test",
    ]  # fmt: skip
    declared = _load(tmp_path, {"mode": "exit_code", "command": "sh run-checks.sh", "infrastructure": ["Makefile"]})
    assert command_infrastructure(declared.spec, ["test/add.test.js"]) == ["Makefile", "run-checks.sh"]
