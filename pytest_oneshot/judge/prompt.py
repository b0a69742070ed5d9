"""What a rubric judge is asked and how its answer is read: prompt, JSON schema, strict parsing.

The prompt follows OneShot's single-rubric judge (instructions, diff, test results, the rubric's
criterion and evaluation criteria, the score scale) but always carries the diff (OneShot's never
did). The answer must be the schema's JSON object for the rubric asked, with a finite score in
[0, 1]: anything else is a :class:`JudgeError`, never a guessed score.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from pytest_oneshot.judge import JudgeError, JudgeRequest

__all__ = ["MAX_DIFF_CHARS", "SCHEMA", "SCHEMA_NAME", "SYSTEM_PROMPT", "parse_verdict", "user_prompt"]

MAX_DIFF_CHARS: Final = 200_000
"""Longer diffs are cut (head and tail kept, the cut said) so a request stays within a model's context."""
SCHEMA_NAME: Final = "rubric_verdict"
SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rubric_id": {"type": "string", "description": "the id of the rubric evaluated"},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "0 = not met, 1 = fully met"},
        "reasoning": {"type": "string", "description": "why this score, criterion by criterion"},
        "evidence": {
            "type": "array",
            "items": {"type": "string"},
            "description": "short verbatim quotes from the diff the score rests on",
        },
    },
    "required": ["rubric_id", "score", "reasoning", "evidence"],
}
SYSTEM_PROMPT: Final = (
    "You are an expert code reviewer evaluating how well an AI agent completed a programming task. "
    "Judge only the change shown in the diff, against the one rubric given. Provide objective, evidence-based "
    "scoring: quote the lines of the diff your score rests on."
)
_SCALE = (
    "Score scale: 1.0 the criterion is fully met; 0.7-0.9 mostly met; 0.4-0.6 partially met; "
    "0.1-0.3 barely met; 0.0 not met."
)


def _cut(diff: str) -> str:
    if len(diff) <= MAX_DIFF_CHARS:
        return diff
    half = MAX_DIFF_CHARS // 2
    return f"{diff[:half]}\n[... {len(diff) - 2 * half} characters of the diff left out ...]\n{diff[-half:]}"


def user_prompt(request: JudgeRequest) -> str:
    """The question for one rubric; the same request always gives the same text (it is part of the cache key)."""
    rubric = request.rubric
    tests = [f"- {test.id} ({test.kind}): {test.status.upper()}" for test in request.tests] or ["- (none)"]
    if request.tests_problem:
        tests.append(f"- the test run cannot be trusted: {request.tests_problem}")
    criteria = [f"- {line}" for line in rubric.evaluation_criteria] or ["- (none beyond the criterion)"]
    diff = _cut(request.diff) if request.diff.strip() else "(the agent changed nothing)"
    return "\n".join(
        [
            "# Task Evaluation - Single Rubric",
            "",
            "## Task ID",
            request.task_id,
            "",
            "## Original Instructions",
            request.instructions.strip(),
            "",
            "## Agent's Changes (diff)",
            "```diff",
            diff.rstrip("\n"),
            "```",
            "",
            "## Hidden Test Results",
            *tests,
            "",
            "## Rubric to Evaluate",
            f"### {rubric.id}",
            f"**Criterion:** {rubric.criterion or rubric.id}",
            "**Evaluation Criteria:**",
            *criteria,
            "",
            _SCALE,
            f'Answer with the JSON object of the schema: "rubric_id": "{rubric.id}", "score", "reasoning", '
            '"evidence" (verbatim quotes from the diff).',
        ]
    )


def parse_verdict(text: str, rubric_id: str) -> tuple[float, str, tuple[str, ...]]:
    """(score, reasoning, evidence) from the judge's answer text.

    Raises:
        JudgeError: not JSON, not the schema's object, another rubric, or a score outside [0, 1].
    """
    try:
        answer = json.loads(text)
    except ValueError:
        raise JudgeError(f"the answer is not JSON: {text[:200]!r}") from None
    if not isinstance(answer, dict):
        raise JudgeError(f"the answer is not a JSON object: {text[:200]!r}")
    missing = [key for key in SCHEMA["required"] if key not in answer]
    if missing:
        raise JudgeError(f"the answer lacks {', '.join(missing)}: {text[:200]!r}")
    if answer["rubric_id"] != rubric_id:
        raise JudgeError(f"the answer is for rubric {answer['rubric_id']!r}, not {rubric_id!r}")
    score = answer["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise JudgeError(f"score is not a number (got {score!r})")
    if not 0.0 <= score <= 1.0:
        raise JudgeError(f"score is out of range [0, 1] (got {score!r})")
    reasoning, evidence = answer["reasoning"], answer["evidence"]
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise JudgeError("the answer's reasoning is empty")
    if not isinstance(evidence, list) or not all(isinstance(quote, str) for quote in evidence):
        raise JudgeError(f"evidence is not a list of strings (got {evidence!r})")
    return float(score), reasoning.strip(), tuple(evidence)
