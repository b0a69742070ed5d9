"""The built-in judge's own behaviour beyond the contract: its concurrency bound, Retry-After, no retry of a
spent quota, and messages that never quote the key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from judge_answers import answer, http_error, judge_request, verdict_json

from pytest_oneshot.judge import JudgeError
from pytest_oneshot.judge.responses import ResponsesJudge
from pytest_oneshot.model.cassette import HttpError, Turn
from pytest_oneshot.model.scripted import ScriptedResponsesServer


def test_calls_in_flight_are_bounded_per_process(tmp_path: Path) -> None:
    with ScriptedResponsesServer() as server:
        slow = Turn.model_validate({**answer(verdict_json()).model_dump(), "latency_sec": 0.3})
        url = server.add_script("k", [slow])
        judge = ResponsesJudge({"base_url": url, "concurrency": "2"})  # no cache: every call is made
        threads = [threading.Thread(target=judge.judge, args=(judge_request(),)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(server.requests("k")) == 6
        assert server.most_in_flight("k") == 2


def test_retry_after_is_honoured_and_a_spent_quota_is_not_retried() -> None:
    quota = HttpError(status=429, body={"error": {"code": "insufficient_quota", "message": "You exceeded your quota."}})
    with ScriptedResponsesServer() as server:
        judge = ResponsesJudge({"base_url": server.add_script("quota", [Turn(http_error=quota)]), "backoff_sec": "30"})
        with pytest.raises(JudgeError, match=r"HTTP 429.*insufficient_quota"):
            judge.judge(judge_request())
        assert len(server.requests("quota")) == 1


def test_an_error_quoting_the_key_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-judge-" + "echoed-4411"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = HttpError(status=401, body={"error": {"code": "invalid_api_key", "message": f"Incorrect API key: {key}"}})
    with ScriptedResponsesServer() as server:
        judge = ResponsesJudge({"base_url": server.add_script("k", [Turn(http_error=echo)])})
        with pytest.raises(JudgeError) as raised:
            judge.judge(judge_request())
    assert key not in str(raised.value) and "Incorrect API key: ***" in str(raised.value)


def test_no_key_for_the_openai_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(JudgeError, match=r"no API key for https://api\.openai\.com/v1: set OPENAI_API_KEY"):
        ResponsesJudge({}).judge(judge_request())


def test_a_retried_answer_counts_its_attempts(tmp_path: Path) -> None:
    with ScriptedResponsesServer() as server:
        url = server.add_script("k", [http_error(502), answer(verdict_json(0.4))])
        verdict = ResponsesJudge({"base_url": url, "backoff_sec": "0.01", "cache_dir": str(tmp_path)}).judge(
            judge_request()
        )
    assert (verdict.score, verdict.record["attempts"]) == (0.4, 2)
