"""Rubric scoring: each rubric is scored by its tests, by a judge (:mod:`.judging`), or stays *unscored*.

A test-scored rubric's score is the pass rate of its fail-to-pass tests, and 0 if any of
its pass-to-pass tests regressed: doing nothing scores 0, breaking something scores 0. In the
reward mode (``tests.mode``) it is the reward the task's command wrote, in [0, 1].

A rubric no test and no judge can score is reported as unscored -- never a silent 0 and
never free points -- and the total is the weighted mean over the scored rubrics only.
"""

from __future__ import annotations

from pydantic import BaseModel

from pytest_oneshot.scoring.tests import GradedTest, TestRun, graded_tests
from pytest_oneshot.task import TaskSpec


class RubricScore(BaseModel):
    id: str
    criterion: str
    weight: float
    score: float | None
    """Pass rate of the rubric's tests, or the judge's score, in [0, 1]; None when nothing could score it."""
    test_count: int = 0
    tests_passed: int = 0
    scored_by: str | None = None
    """``tests``, ``judge``, or None (unscored)."""
    reasoning: str | None = None
    """Why the judge gave its score (judged rubrics)."""
    evidence: list[str] = []
    """Quotes from the diff the judge's score rests on."""
    judge_model: str | None = None


def score_rubrics(spec: TaskSpec, tests: TestRun) -> list[RubricScore]:
    by_rubric: dict[str, list[GradedTest]] = {}
    for test in graded_tests(spec):
        if test.rubric_id is not None:
            by_rubric.setdefault(test.rubric_id, []).append(test)
    scores = []
    for rubric in spec.evaluation.rubrics:
        graded = by_rubric.get(rubric.id, [])
        passed = [test for test in graded if tests.passed(test.id)]
        fail_to_pass = [test for test in graded if test.kind == "fail_to_pass"]
        regressed = any(test.kind == "pass_to_pass" and test not in passed for test in graded)
        score = None
        if fail_to_pass:
            score = 0.0 if regressed else sum(1 for test in passed if test.kind == "fail_to_pass") / len(fail_to_pass)
            if tests.reward is not None and tests.problem is None:  # reward mode: partial credit counts
                score = tests.reward
        scores.append(
            RubricScore(
                id=rubric.id,
                criterion=rubric.criterion,
                weight=rubric.weight,
                score=score,
                test_count=len(graded),
                tests_passed=len(passed),
                scored_by="tests" if score is not None else None,
            )
        )
    return scores


def total_score(rubrics: list[RubricScore]) -> float | None:
    """Weighted mean over scored rubrics; None when no rubric is scored."""
    scored = [(rubric.score, rubric.weight) for rubric in rubrics if rubric.score is not None]
    if not scored:
        return None
    return sum(score * weight for score, weight in scored) / sum(weight for _, weight in scored)
