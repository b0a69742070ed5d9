"""An agent cannot make an item pass by attacking the tests, and cannot see the answer."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

ATTACKS = {
    "rewrite-hidden-test": (
        "printf 'def test_add():\\n    pass\\n\\ndef test_zero():\\n    pass\\n' > tests/test_calc.py"
    ),
    "delete-tests": "rm -rf tests",
    "conftest-skips-everything": (
        "printf 'import pytest\\n\\ndef pytest_collection_modifyitems(items):\\n"
        "    for item in items:\\n        item.add_marker(pytest.mark.skip)\\n' > conftest.py"
    ),
    "conftest-forces-pass": (
        "mkdir -p tests && printf 'import pytest\\n\\n@pytest.hookimpl(wrapper=True)\\n"
        "def pytest_runtest_makereport(item, call):\\n"
        '    rep = yield\\n    rep.outcome = "passed"\\n    return rep\\n\' > tests/conftest.py'
    ),
    "pytest-ini-deselects": "printf '[pytest]\\naddopts = -k test_zero\\n' > pytest.ini",
    "conftest-ignores-tests": "printf 'import pytest\\ncollect_ignore = [\"tests\"]\\n' > conftest.py",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_on_tests_cannot_pass(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., object], attack: str
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    run = run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack}")
    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-add[command-r0]"]
    assert item["outcome"] == "failed"
    assert item["tests"]["statuses"]["tests/test_calc.py::test_add"] != "passed"
    assert item["score"] == 0.0


def test_test_infrastructure_reset_is_reported(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., object]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    run = run_and_parse(
        "tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={ATTACKS['conftest-skips-everything']}"
    )
    item = run.items()["fix-add[command-r0]"]
    assert item["reset_to_start"] == {"conftest.py": "conftest.py (test infrastructure)"}
    assert "conftest.py" in item["changed_files"]  # the attempt is still in the recorded diff


def test_solving_honestly_still_passes_under_the_same_checks(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., object]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    fix = "sed -i 's/a - b/a + b/' calc/__init__.py"
    run = run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={fix}")
    run.result.assert_outcomes(passed=1)
    assert run.items()["fix-add[command-r0]"]["score"] == 1.0


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="isolation needs bubblewrap (apt-get install bubblewrap)")
def test_agent_cannot_find_the_answer_notes_or_hidden_tests(
    pytester: pytest.Pytester, answer_search: Callable[..., list[str]]
) -> None:
    # nothing found; the history is the start commit + the baseline commit
    assert answer_search(pytester.path / "tasks") == ["2"]
