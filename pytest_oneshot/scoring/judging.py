"""Judging the rubrics no test scores: one :class:`~pytest_oneshot.judge.Judge` call per such rubric.

Shared by the trial's ``judge`` phase and ``oneshot regrade``. Rubrics scored by tests keep their
test score and are never sent; a judge failure is raised, naming the rubric, never turned into a score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pytest_oneshot.judge import GradedResult, Judge, JudgeError, JudgeRequest
from pytest_oneshot.scoring.rubric import RubricScore
from pytest_oneshot.scoring.tests import TestRun
from pytest_oneshot.task import Rubric

__all__ = ["judge_rubrics", "unscored"]


def unscored(rubrics: Sequence[Rubric], scores: Sequence[RubricScore]) -> list[Rubric]:
    """The rubrics whose score is still None: what a judge is asked about."""
    missing = {score.id for score in scores if score.score is None}
    return [rubric for rubric in rubrics if rubric.id in missing]


def judge_rubrics(
    judge: Judge,
    *,
    model: str,
    task_id: str,
    instructions: str,
    diff: bytes,
    tests: TestRun,
    rubrics: Sequence[Rubric],
    scores: Sequence[RubricScore],
    endpoint: Callable[[str], str | None] = lambda rubric_id: None,
    record: Callable[[str, dict[str, Any]], None] = lambda rubric_id, entry: None,
) -> list[RubricScore]:
    """``scores`` with every unscored rubric of ``rubrics`` judged, in order.

    ``endpoint(rubric_id)`` may route a rubric's call elsewhere (a replayed cassette); ``record`` receives
    each judged rubric's record for the run dir as soon as it is judged.

    Raises:
        JudgeError: naming the rubric the judge could not score.
    """
    graded = tuple(GradedResult(test_id, tests.kinds[test_id], status) for test_id, status in tests.statuses.items())
    text = diff.decode("utf-8", "replace")
    judged: dict[str, RubricScore] = {}
    by_id = {score.id: score for score in scores}
    for rubric in unscored(rubrics, scores):
        request = JudgeRequest(
            task_id=task_id,
            instructions=instructions,
            diff=text,
            tests=graded,
            rubric=rubric,
            model=model,
            tests_problem=tests.problem,
            endpoint=endpoint(rubric.id),
        )
        try:
            verdict = judge.judge(request)
        except JudgeError as exc:
            raise JudgeError(f"rubric {rubric.id}: {exc}") from None
        if not 0.0 <= verdict.score <= 1.0:  # a plugin's judge, too, never scores outside the scale
            raise JudgeError(f"rubric {rubric.id}: score is out of range [0, 1] (got {verdict.score!r})")
        verdict_fields = {"score": verdict.score, "reasoning": verdict.reasoning, "evidence": list(verdict.evidence)}
        record(rubric.id, {**verdict.record, **verdict_fields, "cached": verdict.cached})
        judged[rubric.id] = by_id[rubric.id].model_copy(
            update={
                "score": verdict.score,
                "scored_by": "judge",
                "reasoning": verdict.reasoning,
                "evidence": list(verdict.evidence),
                "judge_model": verdict.model or model,
            }
        )
    return [judged.get(score.id, score) for score in scores]
