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
    pytester: pytest.Pytester, make_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any]
) -> None:
    task = make_task(pytester.path / "tasks" / "fix-add")
    canary = "CANARY" + "-d0c4e1"  # split so this file itself never matches
    (task / "notes.md").write_text(f"notes {canary}\n")
    (task / "tests" / "test_calc.py").write_text((task / "tests" / "test_calc.py").read_text() + f"\n# {canary}\n")
    search = (
        "echo search-start; "
        "find / -xdev \\( -name diff.patch -o -name notes.md -o -name tb_meta.json -o -name repo.bundle \\) "
        "-print 2>/dev/null; "
        "grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=usr CANARY-d0c4 / 2>/dev/null; "
        "git log --all --format=%H | wc -l; echo search-end"
    )
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={search}")
    log = (Path(run.items()["fix-add[command-r0]"]["run_dir"]) / "agent" / "agent.log").read_text()
    found = log.split("search-start\n", 1)[1].split("search-end", 1)[0].split()
    assert found == ["2"], log  # nothing found; history = the start commit + the baseline commit
