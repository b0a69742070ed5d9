"""In a container too: attacks on the tests cannot pass, and the answer is nowhere to be found."""

from __future__ import annotations

import base64
import shlex
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
}

# Appended to the system pytest, this makes every test pass: its body is never called.
SYSTEM_PYTEST = "/usr/lib/python3/dist-packages/pytest/__init__.py"
EVERY_TEST_PASSES = "\nimport _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n"


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


def test_tampering_with_its_own_system_stays_in_the_agents_container(
    pytester: pytest.Pytester, make_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any]
) -> None:
    """The agent makes its own pytest pass everything, and shows it works there (a failing test of
    its own passes); the scoring container runs a fresh system, where the unfixed bug fails."""
    attack = (
        f"printf {shlex.quote(EVERY_TEST_PASSES)} >> {SYSTEM_PYTEST} && "
        "printf 'def test_fails():\\n    assert False\\n' > /tmp/test_own.py && "
        "python3 -m pytest -q -p no:cacheprovider /tmp/test_own.py"
    )
    make_task(pytester.path / "tasks" / "fix-add")
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack}")
    item = run.items()["fix-add[command-r0]"]
    agent_log = (Path(item["run_dir"]) / "agent" / "agent.log").read_text()
    assert item["agent"]["exit_code"] == 0 and "1 passed" in agent_log, agent_log
    run.result.assert_outcomes(failed=1)
    assert item["tests"]["statuses"]["tests/test_calc.py::test_add"] == "failed"


# The agent's module, imported by tests.setup in the scoring container before pytest starts: it
# tries to make the system pytest pass everything, and says whether the write worked.
SETUP_ATTACK = f"""\
try:
    with open({SYSTEM_PYTEST!r}, "a") as handle:
        handle.write({EVERY_TEST_PASSES!r})
    print("ATTACK: wrote the system pytest")
except OSError as exc:
    print("ATTACK: write failed:", exc)


def add(a, b):
    return a - b
"""


def test_tests_setup_cannot_change_the_scoring_system(
    pytester: pytest.Pytester, make_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any]
) -> None:
    """tests.setup runs the agent's code in the scoring container before pytest: that container's
    system is read-only, so the write fails there and the unfixed bug still fails."""
    make_task(pytester.path / "tasks" / "fix-add", tests={"setup": ["python3 -c 'import calc'"]})
    payload = base64.b64encode(SETUP_ATTACK.encode()).decode()
    attack = f"echo {payload} | base64 -d > calc/__init__.py"
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack}")
    item = run.items()["fix-add[command-r0]"]
    tests_log = (Path(item["run_dir"]) / "tests.log").read_text()
    assert "ATTACK: write failed: [Errno 30] Read-only file system" in tests_log, tests_log
    assert "ATTACK: wrote" not in tests_log
    run.result.assert_outcomes(failed=1)
    assert item["tests"]["statuses"]["tests/test_calc.py::test_add"] == "failed"


def test_agent_in_a_container_cannot_find_the_answer(
    pytester: pytest.Pytester, engine: Engine, answer_search: Callable[..., list[str]]
) -> None:
    # nothing found; the history is the start commit + the baseline commit
    assert answer_search(pytester.path / "tasks", "--oneshot-sandbox=docker") == ["2"]
