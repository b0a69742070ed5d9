"""The Judge extension point: scores a rubric that no hidden test can score, from the agent's diff.

A judge reads what a reviewer would (the task's instructions, the agent's diff, the hidden-test
results, one rubric's criterion and evaluation criteria) and answers a score in [0, 1] with its
reasoning and evidence quoted from the diff. It never makes up a score: whatever keeps it from
answering (an HTTP error, a timeout, an answer that does not parse or is out of range) is a
:class:`JudgeError`, which makes the item an *error* -- never 0, never free points.

Test-backed rubrics keep their test score: the trial asks a judge only about rubrics nothing else
scored, in its own ``judge`` phase after the verdict of the hidden tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.registry import Registry
from pytest_oneshot.task import Rubric

__all__ = [
    "GradedResult",
    "Judge",
    "JudgeError",
    "JudgeFactory",
    "JudgeRequest",
    "JudgeVerdict",
    "default_judge_registry",
]


class JudgeError(OneshotError):
    """The judge could not score the rubric; the message says why (never holds a key)."""


@dataclass(frozen=True)
class GradedResult:
    """One hidden test's result as the judge is shown it."""

    id: str
    kind: str
    """``fail_to_pass`` or ``pass_to_pass``."""
    status: str
    """``passed``, ``failed``, ``error``, ``skipped`` or ``missing``."""


@dataclass(frozen=True)
class JudgeRequest:
    """One rubric of one trial to judge. Nothing run-specific (ids, paths, times) is in it, so the
    same attempt asks the same question in every run (and hits the cache)."""

    task_id: str
    instructions: str
    diff: str
    """The agent's change as a unified diff (``diff.patch``), decoded as UTF-8 with replacement."""
    tests: tuple[GradedResult, ...]
    rubric: Rubric
    model: str
    tests_problem: str | None = None
    """Why the test run cannot be trusted, when it cannot."""
    endpoint: str | None = None
    """A base URL replacing the judge's own for this request (a replayed judge cassette): it gets
    no API key, and its answers are not cached."""


@dataclass(frozen=True)
class JudgeVerdict:
    score: float
    """In [0, 1]."""
    reasoning: str
    evidence: tuple[str, ...] = ()
    """Quotes from the diff the score rests on."""
    model: str = ""
    cached: bool = False
    """Answered from the judge's cache: no call was made."""
    usage: Mapping[str, int] = field(default_factory=dict)
    """Tokens the call cost (flat counts, as :mod:`oneshot_shared.wire` names them); empty when unknown."""
    record: Mapping[str, object] = field(default_factory=dict)
    """What the judge wants kept in the run dir's ``judge.json`` (prompt, raw answer...); never a key."""


class Judge(Protocol):
    """Scores one rubric of one attempt.

    Every promise below is a test of ``tests/contract/test_judge_contract.py``, run on each judge; a
    judge that cannot keep one declares it there, with the reason, as a known gap. ``judge`` may be
    called from several threads at once (trials run in threads).
    """

    name: str

    def judge(self, request: JudgeRequest) -> JudgeVerdict:
        """Score ``request.rubric`` for the attempt described by ``request``.

        Returns:
            A verdict whose ``score`` is in [0, 1], with non-empty ``reasoning``.

        Raises:
            JudgeError: no score could be obtained (HTTP error after the retries, timeout, an answer
                that does not parse, is for another rubric or is out of range). Never a default score.
        """
        ...


class JudgeFactory(Protocol):
    def __call__(self, options: Mapping[str, str]) -> Judge: ...


def default_judge_registry() -> Registry[JudgeFactory]:
    registry: Registry[JudgeFactory] = Registry("judge", "pytest_oneshot.judges")
    registry.register("openai", "pytest_oneshot.judge.responses:ResponsesJudge")
    registry.load_entry_points()
    return registry
