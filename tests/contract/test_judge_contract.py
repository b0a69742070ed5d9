"""The Judge contract (pytest_oneshot/judge/__init__.py), one test per promise, on every judge (see
judge_backends.py), against a scripted Responses server on 127.0.0.1. A judge that cannot keep a
promise declares it in ``KNOWN_GAPS``: that test skips with the reason."""

from __future__ import annotations

import pytest
from judge_backends import (
    DIFF,
    RUBRIC,
    JudgeBackend,
    answer,
    failed,
    http_error,
    judge_request,
    verdict_json,
)

from pytest_oneshot.judge import JudgeError
from pytest_oneshot.model.cassette import Turn

# --- a verdict -----------------------------------------------------------------------------------


def test_a_good_answer_is_a_verdict_on_the_scale(judge_backend: JudgeBackend) -> None:
    verdict = judge_backend.judge([answer(verdict_json(0.8))]).judge(judge_request())
    assert (verdict.score, verdict.reasoning, verdict.evidence) == (0.8, "small and clear", ("+    return a + b",))
    assert verdict.model == "judge-m"


def test_the_question_holds_everything_a_reviewer_needs(judge_backend: JudgeBackend) -> None:
    judge_backend.judge([answer(verdict_json())]).judge(judge_request())
    (received,) = judge_backend.requests()
    body = received.body
    assert body["model"] == "judge-m" and not body.get("stream")
    text_format = body["text"]["format"]
    assert text_format["type"] == "json_schema" and text_format["strict"] is True
    assert set(text_format["schema"]["required"]) == {"rubric_id", "score", "reasoning", "evidence"}
    prompt = "\n".join(str(item["content"]) for item in body["input"])
    for needed in (
        DIFF.rstrip("\n"),
        "calc.add subtracts instead of adding",
        RUBRIC.criterion,
        *RUBRIC.evaluation_criteria,
        "tests/test_calc.py::test_add (fail_to_pass): PASSED",
    ):
        assert needed in prompt, needed


@pytest.mark.parametrize("score", [0, 1, 0.0, 1.0])
def test_the_ends_of_the_scale_are_scores(judge_backend: JudgeBackend, score: float) -> None:
    assert judge_backend.judge([answer(verdict_json(score))]).judge(judge_request()).score == score


# --- never a default score -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("turn", "problem"),
    [
        (answer("this is not JSON"), "not JSON"),
        (answer('["a", "list"]'), "not a JSON object"),
        (answer(verdict_json(1.5)), "out of range"),
        (answer(verdict_json(-0.1)), "out of range"),
        (answer(verdict_json("high")), "not a number"),
        (answer(verdict_json(True)), "not a number"),
        (answer(verdict_json(float("nan"))), "not a number"),
        (answer(verdict_json(rubric_id="correctness")), "for rubric 'correctness'"),
        (answer(verdict_json(reasoning="  ")), "reasoning is empty"),
        (answer(verdict_json(evidence="all of it")), "evidence is not a list"),
        (Turn(output=[{"type": "reasoning", "summary": []}]), "no output_text"),
        (failed(), "failed"),
        (http_error(400, "invalid_request_error"), "HTTP 400"),
    ],
    ids=[
        "not-json", "not-object", "above-1", "below-0", "string-score", "bool-score", "nan", "other-rubric",
        "no-reasoning", "evidence-string", "no-message", "response-failed", "http-400",
    ],
)  # fmt: skip
def test_an_answer_that_is_no_verdict_is_a_judge_error(judge_backend: JudgeBackend, turn: Turn, problem: str) -> None:
    judge = judge_backend.judge([turn])
    with pytest.raises(JudgeError, match=problem):
        judge.judge(judge_request())


def test_a_server_that_never_answers_is_a_judge_error(judge_backend: JudgeBackend) -> None:
    judge = judge_backend.judge([Turn(hang=True)], timeout="1")
    with pytest.raises(JudgeError):
        judge.judge(judge_request())


def test_a_persistent_server_error_is_a_judge_error(judge_backend: JudgeBackend) -> None:
    judge = judge_backend.judge([http_error(503)], retries="2")
    with pytest.raises(JudgeError, match="503"):
        judge.judge(judge_request())
    assert len(judge_backend.requests()) <= 3  # bounded: never asked for ever


# --- retries and cache ---------------------------------------------------------------------------


def test_429_and_5xx_are_retried_then_answered(judge_backend: JudgeBackend) -> None:
    judge_backend.gap("retries")
    judge = judge_backend.judge([http_error(429, "rate_limit_exceeded"), http_error(500), answer(verdict_json(0.6))])
    assert judge.judge(judge_request()).score == 0.6
    assert len(judge_backend.requests()) == 3


def test_the_same_question_twice_costs_one_call(judge_backend: JudgeBackend) -> None:
    judge_backend.gap("cache")
    first = judge_backend.judge([answer(verdict_json(0.7))]).judge(judge_request())
    again = judge_backend.judge([answer(verdict_json(0.1))]).judge(judge_request())  # a new judge, same cache
    assert (first.cached, again.cached, again.score) == (False, True, 0.7)
    assert len(judge_backend.requests()) == 1
    judge_backend.judge([answer(verdict_json(0.1))]).judge(judge_request(model="other-model"))
    assert len(judge_backend.requests()) == 2  # another model is another question


# --- the key -------------------------------------------------------------------------------------


def test_the_key_goes_in_the_authorization_header_only(
    judge_backend: JudgeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE_CONTRACT_KEY", "sk-contract-judge-canary")
    judge = judge_backend.judge([answer(verdict_json())], api_key_env="JUDGE_CONTRACT_KEY")
    verdict = judge.judge(judge_request())
    replayed = judge.judge(judge_request(model="replay", endpoint=judge_backend.server.url_for(judge_backend.key)))
    first, second = judge_backend.requests()
    assert first.headers["authorization"] == "Bearer sk-contract-judge-canary"
    assert "authorization" not in second.headers  # a request routed elsewhere (a replay) gets no key
    assert "sk-contract-judge-canary" not in repr((first.body, verdict, replayed))
