"""In a container too: attacks on the tests cannot pass, and the answer is nowhere to be found."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = pytest.mark.docker

ATTACKS = {
    "conftest-skips-everything": (
        "printf 'import pytest\\n\\ndef pytest_collection_modifyitems(items):\\n"
        "    for item in items:\\n        item.add_marker(pytest.mark.skip)\\n' > conftest.py"
    ),
    "delete-tests": "rm -rf tests",
    "tamper-with-the-system-python": "echo 'raise SystemExit(0)' > /usr/lib/python3/dist-packages/pytest/__init__.py",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_on_tests_cannot_pass_in_docker(
    pytester: pytest.Pytester, make_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any],
    attack: str,
) -> None:  # fmt: skip
    make_task(pytester.path / "tasks" / "fix-add")
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack}")
    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-add[command-r0]"]
    assert item["tests"]["statuses"]["tests/test_calc.py::test_add"] != "passed"


def test_agent_in_a_container_cannot_find_the_answer(
    pytester: pytest.Pytester, engine: Engine, answer_search: Callable[..., list[str]]
) -> None:
    # nothing found; the history is the start commit + the baseline commit
    assert answer_search(pytester.path / "tasks", "--oneshot-sandbox=docker") == ["2"]
