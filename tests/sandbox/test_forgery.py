"""No agent can forge the verdict, in either sandbox: every attack of ``forgery_attacks.ATTACKS``
leaves the bug in place and must end as a *failed* item, never passed and never a harness error;
an honest fix under the same fixture passes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forgery_attacks import (
    ATTACK_PARAMS,
    BROKEN_TESTS_SETUP,
    HONEST_FIX,
    ITEM,
    Attack,
    assert_honest_fix_passes,
    assert_not_forged,
    assert_untrusted_run_fails,
    run_agent,
)

NO_BWRAP = shutil.which("bwrap") is None


@pytest.fixture(
    params=[
        pytest.param(
            "local", marks=pytest.mark.skipif(NO_BWRAP, reason="needs bubblewrap (apt-get install bubblewrap)")
        ),
        pytest.param("docker", marks=pytest.mark.docker),
    ]
)
def sandbox(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("engine")  # started, or skipped/failed with the reason
    return str(request.param)


@pytest.mark.parametrize("attack", ATTACK_PARAMS)
def test_attack_cannot_forge_a_pass(
    pytester: pytest.Pytester,
    make_real_task: Callable[..., Path],
    run_and_parse: Callable[..., Any],
    sandbox: str,
    attack: Attack,
) -> None:
    make_real_task(pytester.path / "tasks" / "calc", repo_files=dict(attack.repo_files), **attack.meta)
    assert_not_forged(run_agent(run_and_parse, sandbox, attack.command, attack.timeout), ITEM, attack)


def test_honest_fix_passes(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], run_and_parse: Callable[..., Any], sandbox: str
) -> None:
    make_real_task(pytester.path / "tasks" / "calc")
    assert_honest_fix_passes(run_agent(run_and_parse, sandbox, HONEST_FIX))


def test_failing_tests_setup_is_not_a_pass(
    pytester: pytest.Pytester, make_real_task: Callable[..., Path], run_and_parse: Callable[..., Any], sandbox: str
) -> None:
    make_real_task(pytester.path / "tasks" / "calc", tests=BROKEN_TESTS_SETUP)
    assert_untrusted_run_fails(run_agent(run_and_parse, sandbox, HONEST_FIX))
