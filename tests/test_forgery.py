"""No agent can forge the verdict (local sandbox): every attack of ``forgery_attacks.ATTACKS``
leaves the bug in place and must end as a *failed* item, never passed and never a harness error."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forgery_attacks import ATTACK_PARAMS, FAIL_TO_PASS, Attack, assert_not_forged

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")

ITEM = "calc[command-r0]"
HONEST_FIX = "sed -i 's/a - b/a + b/' src/calc/__init__.py"


@pytest.mark.parametrize("attack", ATTACK_PARAMS)
def test_attack_cannot_forge_a_pass(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], run_and_parse: Callable[..., Any], attack: Attack
) -> None:
    make_real_task(pytester.path / "tasks" / "calc", repo_files=dict(attack.repo_files), **attack.meta)
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=local", "--oneshot-agent=command", f"--oneshot-agent-cmd={attack.command}",
        timeout=attack.timeout,
    )  # fmt: skip
    assert_not_forged(run, ITEM, attack)


def test_honest_fix_passes(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    make_real_task(pytester.path / "tasks" / "calc")
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=local", "--oneshot-agent=command", f"--oneshot-agent-cmd={HONEST_FIX}", timeout=240
    )
    run.result.assert_outcomes(passed=1)
    item = run.items()[ITEM]
    assert item["outcome"] == "passed"
    assert item["tests"]["statuses"][FAIL_TO_PASS] == "passed"
    assert item["changed_files"] == ["src/calc/__init__.py"]


def test_failing_tests_setup_is_not_a_pass(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    """A task whose ``tests.setup`` fails cannot be trusted to pass, even with the right fix."""
    make_real_task(pytester.path / "tasks" / "calc", tests={"setup": ["echo setting up; exit 1"]})
    run = run_and_parse(
        "tasks", "--oneshot-sandbox=local", "--oneshot-agent=command", f"--oneshot-agent-cmd={HONEST_FIX}", timeout=240
    )
    assert run.items()[ITEM]["outcome"] != "passed"
    assert not run.result.parseoutcomes().get("passed")
