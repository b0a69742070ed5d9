"""JUnit ``<properties>`` for a task item, via ``item.user_properties``.

pytest writes testcase-level properties for every junit_family; strict xunit2 schema
validators reject them, so users who validate should set ``junit_family=xunit1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_oneshot.result import TrialResult

if TYPE_CHECKING:
    from pytest_oneshot.scoring.tests import TestKind

_KINDS: tuple[TestKind, ...] = ("fail_to_pass", "pass_to_pass")


def junit_properties(result: TrialResult) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("oneshot.outcome", result.outcome),
        ("oneshot.resolved", result.resolved),
        ("oneshot.score", "unscored" if result.score is None else round(result.score, 4)),
        ("oneshot.agent", result.agent.name),
        ("oneshot.model", result.model or ""),
        ("oneshot.rollout", result.rollout),
        ("oneshot.run_dir", result.run_dir),
    ]
    for rubric in result.rubrics:
        props.append((f"oneshot.rubric.{rubric.id}", "unscored" if rubric.score is None else round(rubric.score, 4)))
        if rubric.scored_by == "judge":
            props.append((f"oneshot.rubric.{rubric.id}.judge", rubric.judge_model or ""))
    if result.tests is not None:
        for kind in _KINDS:
            props.append((f"oneshot.{kind}.passed", result.tests.count(kind)))
            props.append((f"oneshot.{kind}.total", result.tests.total(kind)))
    if result.tokens is not None:
        props += [(f"oneshot.tokens.{name}", value) for name, value in result.tokens.items()]
        props.append(("oneshot.model_requests", result.model_requests))
        props.append(("oneshot.cost_usd", "unknown" if result.cost_usd is None else result.cost_usd))
    if result.trace:
        props.append(("oneshot.trace", f"{result.run_dir}/{result.trace}"))
    props += [(f"oneshot.phase.{phase}", round(seconds, 3)) for phase, seconds in result.phases.items()]
    return props
