"""No agent can forge the verdict (docker sandbox): the attacks of ``forgery_attacks.ATTACKS``,
the same table as the local ``tests/test_forgery.py``, each end as a *failed* item."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forgery_attacks import ATTACK_PARAMS, FAIL_TO_PASS, Attack, assert_not_forged

from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = pytest.mark.docker

ITEM = "calc[command-r0]"
HONEST_FIX = "sed -i 's/a - b/a + b/' src/calc/__init__.py"


@pytest.mark.parametrize("attack", ATTACK_PARAMS)
def test_attack_cannot_forge_a_pass_in_docker(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any],
    attack: Attack,
) -> None:  # fmt: skip
    make_real_task(pytester.path / "tasks" / "calc", repo_files=dict(attack.repo_files), **attack.meta)
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack.command}",
        timeout=attack.timeout,
    )  # fmt: skip
    assert_not_forged(run, ITEM, attack)


def test_honest_fix_passes_in_docker(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any]
) -> None:
    make_real_task(pytester.path / "tasks" / "calc")
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={HONEST_FIX}", timeout=240
    )
    run.result.assert_outcomes(passed=1)
    item = run.items()[ITEM]
    assert item["outcome"] == "passed"
    assert item["tests"]["statuses"][FAIL_TO_PASS] == "passed"
    assert item["changed_files"] == ["src/calc/__init__.py"]


def test_failing_tests_setup_is_not_a_pass_in_docker(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], engine: Engine, run_and_parse: Callable[..., Any]
) -> None:
    make_real_task(pytester.path / "tasks" / "calc", tests={"setup": ["echo setting up; exit 1"]})
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=docker", "--oneshot-agent=command", f"--oneshot-agent-cmd={HONEST_FIX}", timeout=240
    )
    assert run.items()[ITEM]["outcome"] != "passed"
    assert not run.result.parseoutcomes().get("passed")
