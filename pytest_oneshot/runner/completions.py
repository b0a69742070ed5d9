"""Completions for Codex Runner questions, from any OpenAI-compatible endpoint.

Two request shapes: ``chat`` (``POST {base_url}/chat/completions``, the prompt as one user message)
and ``completions`` (``POST {base_url}/completions``, the legacy text continuation the original tool
used with Codex models). Either asks for ``n`` choices at ``max_tokens`` and ``temperature`` in one
request, and asks again for the rest when a server returns fewer. Questions are asked one at a time,
in file order. The key is read from the environment at each call and sent only as the
``Authorization`` header; an error message quoting the server has it replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.runner.questions import Question

if TYPE_CHECKING:  # imported where used: every pytest process imports this module, few generate
    import aiohttp

__all__ = ["API_SHAPES", "OPENAI_API_URL", "CompletionError", "GenerationSettings", "generate_completions"]

OPENAI_API_URL: Final = "https://api.openai.com/v1"
API_SHAPES: Final = ("chat", "completions")
_FENCED = re.compile(r"\A\s*```[\w+-]*[ \t]*\n(?P<code>.*?)\n?```\s*\Z", re.DOTALL)


class CompletionError(OneshotError):
    """The endpoint did not give the completions (unreachable, an HTTP error, a malformed answer)."""


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are asked for; the defaults are the original tool's (``n`` 1, 16 tokens, 0.9)."""

    model: str
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    api: Literal["chat", "completions"] = "chat"
    n: int = 1
    max_tokens: int = 16
    temperature: float = 0.9
    timeout_sec: float = 120.0

    @property
    def url(self) -> str:
        path = "chat/completions" if self.api == "chat" else "completions"
        return f"{(self.base_url or OPENAI_API_URL).rstrip('/')}/{path}"

    def body(self, question: Question, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "n": n, "max_tokens": self.max_tokens}
        body["temperature"] = self.temperature
        if self.api == "chat":
            return {**body, "messages": [{"role": "user", "content": question.model_prompt}]}
        return {**body, "prompt": question.model_prompt}


def generate_completions(questions: Sequence[Question], settings: GenerationSettings) -> list[list[str]]:
    """``settings.n`` completions per question, in order.

    Raises:
        CompletionError: naming the question, the URL and what went wrong.
    """
    if not settings.model:
        raise CompletionError("no model to generate completions with: set --oneshot-runner-model (or --model)")
    api_key = os.environ.get(settings.api_key_env) or None
    if api_key is None and not settings.base_url:
        raise CompletionError(f"no API key for {OPENAI_API_URL}: set {settings.api_key_env}")
    return asyncio.run(_generate_all(questions, settings, api_key))


async def _generate_all(
    questions: Sequence[Question], settings: GenerationSettings, api_key: str | None
) -> list[list[str]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = aiohttp.ClientTimeout(total=settings.timeout_sec)
    answers: list[list[str]] = []
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for question in questions:
            texts: list[str] = []
            while len(texts) < settings.n:
                try:
                    got = await _ask(session, settings, question, settings.n - len(texts))
                except CompletionError as exc:
                    raise CompletionError(f"question {question.id!r}: {_redact(str(exc), api_key)}") from None
                texts += got[: settings.n - len(texts)]
            answers.append(texts)
    return answers


async def _ask(session: aiohttp.ClientSession, settings: GenerationSettings, question: Question, n: int) -> list[str]:
    import aiohttp

    url = settings.url
    try:
        async with session.post(url, json=settings.body(question, n)) as response:
            text = await response.text(errors="replace")
            status = response.status
    except TimeoutError:
        raise CompletionError(f"no answer from {url} within {settings.timeout_sec:g}s") from None
    except aiohttp.ClientError as exc:
        raise CompletionError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    if status >= 400:
        raise CompletionError(f"{url} answered HTTP {status}: {text[:300]}")
    try:
        choices = json.loads(text)["choices"]
        texts = [_choice_text(choice, settings.api) for choice in choices]
    except (ValueError, KeyError, TypeError, IndexError):
        raise CompletionError(f"{url} answered without {settings.api} choices: {text[:200]!r}") from None
    if not texts:
        raise CompletionError(f"{url} answered no choices")
    return texts


def _choice_text(choice: dict[str, Any], api: str) -> str:
    if api == "completions":
        return str(choice["text"])
    content = choice["message"]["content"]
    text = content if isinstance(content, str) else ""
    fenced = _FENCED.match(text)  # chat models tend to wrap code in a markdown fence
    return fenced["code"] if fenced else text


def _redact(text: str, api_key: str | None) -> str:
    return text.replace(api_key, "***") if api_key else text
