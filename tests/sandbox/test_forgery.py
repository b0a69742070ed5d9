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
    MODES,
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
    task = make_real_task(pytester.path / "tasks" / "calc", repo_files=dict(attack.repo_files), **attack.meta)
    _add_hidden(task, attack.hidden_files)
    assert_not_forged(run_agent(run_and_parse, sandbox, attack.command, attack.timeout), ITEM, attack)


def _add_hidden(task: Path, files: tuple[tuple[str, str], ...]) -> None:
    for path, text in files:
        (task / "hidden" / path).parent.mkdir(parents=True, exist_ok=True)
        (task / "hidden" / path).write_text(text)


@pytest.mark.parametrize(("meta", "hidden", "fail_to_pass"), MODES)
def test_honest_fix_passes_in_other_modes(
    pytester: pytest.Pytester,
    make_real_task: Callable[..., Path],
    run_and_parse: Callable[..., Any],
    sandbox: str,
    meta: dict[str, Any],
    hidden: tuple[tuple[str, str], ...],
    fail_to_pass: str,
) -> None:
    """The control of the attacks on the non-pytest modes (class 8): the same fixtures, the bug fixed."""
    _add_hidden(make_real_task(pytester.path / "tasks" / "calc", **meta), hidden)
    assert_honest_fix_passes(run_agent(run_and_parse, sandbox, HONEST_FIX), fail_to_pass)


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
