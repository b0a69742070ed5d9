"""Only graded tests run, by node id, and hidden files may sit anywhere in the repo."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# A hidden test file whose graded ids are awkward (spaces, brackets, classes, unittest), beside
# many tests that are not graded and fail: selecting by node id must leave them out.
SUITE = """\
import unittest

import pytest
from calc import add
from calc.tests.helpers import TWO


@pytest.mark.parametrize("case", ["a b", "x[1]", "tab\\there"])
def test_param(case):
    assert add(1, 1) == TWO


class TestAdd:
    def test_in_class(self):
        assert add(2, 3) == 5


class AddCase(unittest.TestCase):
    def test_unittest(self):
        self.assertEqual(add(1, 2), 3)


""" + "".join(f"def test_ungraded_{n}():\n    assert False\n\n\n" for n in range(300))
GRADED = [
    "src/calc/tests/test_suite.py::test_param[a b]",
    "src/calc/tests/test_suite.py::test_param[x[1]]",
    "src/calc/tests/test_suite.py::test_param[tab\\there]",
    "src/calc/tests/test_suite.py::TestAdd::test_in_class",
    "src/calc/tests/test_suite.py::AddCase::test_unittest",
]


@pytest.fixture
def nested_task(pytester: pytest.Pytester, make_task: Callable[..., Path]) -> Path:
    """The repo's tests live in src/calc/tests/ (helpers.py imported by the hidden test); ``calc`` is
    importable through the start commit's ``pythonpath = src``."""
    files = {
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
        "src/calc/__init__.py": "def add(a, b):\n    return a - b\n",
        "src/calc/tests/__init__.py": "",
        "src/calc/tests/helpers.py": "TWO = 2\n",
    }
    task = make_task(pytester.path / "tasks" / "nested", files=files,
                     tests={"fail_to_pass": GRADED, "pass_to_pass": ["src/calc/tests/test_whole.py"]})  # fmt: skip
    shutil.rmtree(task / "tests")
    hidden = task / "hidden" / "src" / "calc" / "tests"
    hidden.mkdir(parents=True)
    (hidden / "test_suite.py").write_text(SUITE)
    (hidden / "test_whole.py").write_text("def test_one():\n    pass\n\n\ndef test_two():\n    pass\n")
    return task


FIX = "sed -i 's/a - b/a + b/' src/calc/__init__.py"


def test_graded_node_ids_run_by_node_id(nested_task: Path, run_and_parse: Callable[..., Any]) -> None:
    run = run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={FIX}")
    item = run.items()["nested[command-r0]"]
    assert item["outcome"] == "passed", item["reason"]
    assert item["tests"]["selected"] == [*GRADED, "src/calc/tests/test_whole.py"]
    assert set(item["tests"]["statuses"].values()) == {"passed"}
    log = (Path(item["run_dir"]) / "tests.log").read_text()
    assert "7 passed" in log and "ungraded" not in log  # 5 graded ids + the 2 tests of the whole file


def test_the_reason_names_every_failing_graded_test(nested_task: Path, run_and_parse: Callable[..., Any]) -> None:
    run = run_and_parse("tasks", "--oneshot-agent=nop")
    reason = run.items()["nested[nop-r0]"]["reason"]
    for test_id in GRADED:
        assert f"{test_id} failed" in reason
    assert "more" not in reason


def test_a_long_list_of_failures_ends_with_and_n_more(pytester: pytest.Pytester, make_task: Callable[..., Path],
                                                      run_and_parse: Callable[..., Any]) -> None:  # fmt: skip
    ids = [f"tests/test_many.py::test_{n}" for n in range(14)]
    task = make_task(pytester.path / "tasks" / "many", tests={"fail_to_pass": ids, "pass_to_pass": []})
    many = "from calc import add\n\n" + "".join(f"def test_{n}():\n    assert add(1, 1) == 2\n\n" for n in range(14))
    (task / "tests" / "test_many.py").write_text(many)
    reason = run_and_parse("tasks", "--oneshot-agent=nop").items()["many[nop-r0]"]["reason"]
    assert "tests/test_many.py::test_9 failed" in reason and "and 4 more" in reason
