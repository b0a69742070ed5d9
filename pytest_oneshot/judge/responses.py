"""The default judge (``openai``): any OpenAI-compatible Responses API, with structured output.

One ``POST {base_url}/responses`` per rubric (not streamed), asking for the JSON schema of
:mod:`pytest_oneshot.judge.prompt` (``text.format`` ``json_schema``, strict). The key is read from the
environment at each call and sent only as the ``Authorization`` header: it is in no cache key, record,
log or message (a message quoting the server's answer has it replaced). Calls are bounded per process
(``concurrency``), retried with exponential backoff on 429 (but not ``insufficient_quota``), 5xx and
refused connections, at most ``retries`` times, honouring ``Retry-After``; a timeout is not retried.
Answers are cached by all of their inputs (:mod:`pytest_oneshot.judge.cache`), so a rerun costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp

from oneshot_shared.wire import usage_from_api
from pytest_oneshot.judge import JudgeError, JudgeRequest, JudgeVerdict
from pytest_oneshot.judge.cache import JudgeCache, cache_key
from pytest_oneshot.judge.prompt import SCHEMA, SCHEMA_NAME, SYSTEM_PROMPT, parse_verdict, user_prompt

__all__ = ["OPENAI_API_URL", "ResponsesJudge", "request_body"]

OPENAI_API_URL: Final = "https://api.openai.com/v1"
_MAX_RETRY_AFTER_SEC: Final = 60.0
_RETRIED: Final = frozenset({429, 500, 502, 503, 504})


def request_body(request: JudgeRequest) -> dict[str, Any]:
    """The Responses API request for one rubric (the whole of what the model is asked)."""
    return {
        "model": request.model,
        "input": [
            {"role": "developer", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(request)},
        ],
        "text": {"format": {"type": "json_schema", "name": SCHEMA_NAME, "strict": True, "schema": SCHEMA}},
        "store": False,
    }


class _Retry(Exception):
    """An answer worth asking again for: 429, 5xx or a refused connection."""

    def __init__(self, problem: str, after: float | None = None) -> None:
        super().__init__(problem)
        self.after = after


class ResponsesJudge:
    """Options (strings, from the session's settings): ``base_url``, ``api_key_env``, ``timeout``,
    ``concurrency``, ``retries``, ``backoff_sec``, ``cache_dir`` (none: no cache)."""

    name = "openai"

    def __init__(self, options: Mapping[str, str]) -> None:
        self.base_url = (options.get("base_url") or OPENAI_API_URL).rstrip("/")
        self.api_key_env = options.get("api_key_env") or "OPENAI_API_KEY"
        self.timeout_sec = float(options.get("timeout") or 120)
        self.retries = int(options.get("retries") or 4)
        self.backoff_sec = float(options.get("backoff_sec") or 1.0)
        self._slots = threading.BoundedSemaphore(int(options.get("concurrency") or 4))
        cache_dir = options.get("cache_dir")
        self._cache = JudgeCache(Path(cache_dir) / "judge") if cache_dir else None

    def judge(self, request: JudgeRequest) -> JudgeVerdict:
        body = request_body(request)
        base_url = (request.endpoint or self.base_url).rstrip("/")
        key = None
        if request.endpoint is None and self._cache is not None:
            key = cache_key(base_url=base_url, body=body, rubric=request.rubric.model_dump(mode="json"))
            if (entry := self._cache.get(key)) is not None:
                return self._verdict(entry, request, cached=True)
        api_key = None if request.endpoint else os.environ.get(self.api_key_env) or None
        if api_key is None and request.endpoint is None and base_url == OPENAI_API_URL:
            raise JudgeError(f"no API key for {base_url}: set {self.api_key_env} (or --oneshot-judge-api-key-env)")
        with self._slots:
            answer, attempts = self._ask(f"{base_url}/responses", body, api_key)
        entry = {
            "model": request.model,
            "base_url": base_url,
            "request": body,
            "answer": answer,
            "attempts": attempts,
        }
        verdict = self._verdict(entry, request, cached=False)  # raises before a bad answer is cached
        if key is not None and self._cache is not None:
            self._cache.put(key, entry)
        return verdict

    def _verdict(self, entry: dict[str, Any], request: JudgeRequest, *, cached: bool) -> JudgeVerdict:
        answer = entry["answer"]
        score, reasoning, evidence = parse_verdict(_output_text(answer), request.rubric.id)
        return JudgeVerdict(
            score=score,
            reasoning=reasoning,
            evidence=evidence,
            model=request.model,
            cached=cached,
            usage=usage_from_api(answer.get("usage") or {}),
            record={**entry, "cached": cached},
        )

    def _ask(self, url: str, body: dict[str, Any], api_key: str | None) -> tuple[dict[str, Any], int]:
        """The answer's JSON and how many attempts it took."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return asyncio.run(self._post(url, body, api_key)), attempt
            except _Retry as retry:
                if attempt > self.retries:
                    raise JudgeError(f"{_redact(str(retry), api_key)} (after {attempt} attempts)") from None
                time.sleep(
                    min(retry.after, _MAX_RETRY_AFTER_SEC) if retry.after else self.backoff_sec * 2 ** (attempt - 1)
                )

    async def _post(self, url: str, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout_sec)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body, headers=headers) as response,
            ):
                text = await response.text(errors="replace")
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError:
            raise JudgeError(f"no answer from {url} within {self.timeout_sec:g}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise _Retry(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        if status >= 400:
            problem = f"{url} answered HTTP {status}: {_redact(text[:300], api_key)}"
            if status in _RETRIED and "insufficient_quota" not in text:
                raise _Retry(problem, _seconds(retry_after))
            raise JudgeError(problem)
        try:
            answer = _json_object(text)
        except ValueError:
            raise JudgeError(
                f"{url} answered a body that is not a JSON object: {_redact(text[:200], api_key)!r}"
            ) from None
        if answer.get("status", "completed") != "completed":
            detail = answer.get("error") or answer.get("incomplete_details")
            raise JudgeError(f"the response is {answer.get('status')}: {_redact(str(detail), api_key)}")
        return answer


def _json_object(text: str) -> dict[str, Any]:
    answer = json.loads(text)
    if not isinstance(answer, dict):
        raise ValueError("not an object")
    return answer


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use the backoff


def _redact(text: str, api_key: str | None) -> str:
    return text.replace(api_key, "***") if api_key else text


def _output_text(answer: Mapping[str, Any]) -> str:
    """The text of the response's message (structured output arrives as ``output_text``).

    Raises:
        JudgeError: the model refused, or the response holds no text.
    """
    texts: list[str] = []
    for item in answer.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue  # reasoning items and the like
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "refusal":
                raise JudgeError(f"the judge refused: {part.get('refusal', '')}")
            if isinstance(part, dict) and part.get("type") == "output_text":
                texts.append(str(part.get("text", "")))
    if not texts:
        raise JudgeError("the response holds no output_text message")
    return "".join(texts)
