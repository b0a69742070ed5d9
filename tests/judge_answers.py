"""Judge answers in the real Responses API's shape, for the scripted server, and a judge request to ask."""

from __future__ import annotations

import json

from pytest_oneshot.judge import GradedResult, JudgeRequest
from pytest_oneshot.model.cassette import HttpError, StreamError, Turn
from pytest_oneshot.task import Rubric

DIFF = (
    "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
    "-    return a - b\n+    return a + b\n"
)
RUBRIC = Rubric(
    id="code_quality",
    criterion="The change is minimal and idiomatic",
    weight=0.3,
    evaluation_criteria=["touches only what the task needs", "no dead code"],
)


def answer(text: str, *, usage: dict[str, int] | None = None) -> Turn:
    """A completed response whose message is ``text`` (structured output arrives as ``output_text``),
    after a reasoning item, as a reasoning model answers."""
    message = {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "text": text}],
    }
    return Turn.model_validate(
        {"output": [{"id": "rs_1", "type": "reasoning", "summary": []}, message], "usage": usage or {}}
    )


def verdict_json(score: object = 0.8, rubric_id: str = RUBRIC.id, **fields: object) -> str:
    return json.dumps(
        {"rubric_id": rubric_id, "score": score, "reasoning": "small and clear", "evidence": ["+    return a + b"]}
        | fields
    )


def http_error(status: int, code: str = "server_error") -> Turn:
    return Turn(http_error=HttpError(status=status, body={"error": {"type": code, "code": code, "message": code}}))


def failed(code: str = "server_error") -> Turn:
    return Turn(stream_error=StreamError(code=code, message="boom"))


def judge_request(model: str = "judge-m", endpoint: str | None = None) -> JudgeRequest:
    return JudgeRequest(
        task_id="fix-add",
        instructions="calc.add subtracts instead of adding; fix it.",
        diff=DIFF,
        tests=(GradedResult("tests/test_calc.py::test_add", "fail_to_pass", "passed"),),
        rubric=RUBRIC,
        model=model,
        endpoint=endpoint,
    )
