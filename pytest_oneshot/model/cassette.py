"""Cassettes: the model's side of a session as a script of turns, validated as it is loaded.

A turn is one model response: Responses-API output items, or a failure (an HTTP error, a stream
that ends in ``response.failed``, a request never answered). :mod:`pytest_oneshot.model.scripted`
serves them; ``oneshot traces export --cassette`` writes them from a recorded session.

Cassette format (``tasks/<task>/cassettes/<name>.json``)::

    {
      "format": "oneshot-cassette/1",
      "model": "gpt-5-mini",             # the model it was recorded with (informational)
      "task_id": "fix-bug",              # optional
      "turns": [                         # one entry per model response
        {"output": [                     # Responses-API output items, as the API sent them
           {"type": "function_call", "call_id": "c1", "name": "exec_command",
            "arguments": "{\"cmd\": \"pytest -q\", \"login\": false}"}],
         "usage": {"input_tokens": 1200, "output_tokens": 40},
         "latency_sec": 0.0},
        {"output": [{"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch",
                     "input": "*** Begin Patch\\n...\\n*** End Patch\\n"}]},
        {"http_error": {"status": 429, "body": {"error": {"code": "insufficient_quota", ...}}}},
        {"stream_error": {"code": "server_error", "message": "boom"}},   # in-stream response.failed
        {"hang": true},                  # accept the request, never answer
        {"output": [{"type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": "Done."}]}]}
      ]
    }

Output items are passed through unchanged (recorded ``reasoning`` items included); the
known kinds are checked for their required fields; the server fills in a missing ``call_id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oneshot_shared.wire import CASSETTE_FORMAT, usage_to_api
from pytest_oneshot.errors import TaskFormatError

__all__ = [
    "CALL_TYPES",
    "CASSETTE_FORMAT",
    "Cassette",
    "HttpError",
    "JudgeCassette",
    "JudgedDiff",
    "StreamError",
    "Turn",
    "Usage",
    "apply_patch",
    "exec_command",
    "insufficient_quota",
    "load_cassette",
    "load_judge_cassette",
    "mcp_call",
    "message",
]

CALL_TYPES = frozenset({"function_call", "custom_tool_call"})
"""Output items the client answers with a tool output (what advances a script)."""
_REQUIRED_FIELDS = {
    "message": ("content",),
    "function_call": ("name", "arguments"),
    "custom_tool_call": ("name", "input"),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Usage(_Model):
    """Tokens billed for one response, reported in ``response.completed``."""

    input_tokens: int = Field(0, ge=0)
    cached_input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    reasoning_output_tokens: int = Field(0, ge=0)

    def to_api(self) -> dict[str, Any]:
        return usage_to_api(self.model_dump())


class HttpError(_Model):
    """Answer the request with a plain HTTP error instead of a stream."""

    status: int = Field(..., ge=400, le=599)
    body: dict[str, Any] = Field(default_factory=dict)


class StreamError(_Model):
    """Start the stream, then end it with ``response.failed``."""

    code: str = Field(..., min_length=1)
    message: str = ""


class Turn(_Model):
    """One model response: output items, or one of the failure modes."""

    output: list[dict[str, Any]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    latency_sec: float = Field(0.0, ge=0, description="delay before the response starts")
    http_error: HttpError | None = None
    stream_error: StreamError | None = Field(None, description="sent after the output items")
    hang: bool = Field(False, description="never answer (for timeout tests)")

    @field_validator("output")
    @classmethod
    def _known_items_complete(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, item in enumerate(items):
            kind = item.get("type")
            if not isinstance(kind, str):
                raise ValueError(f"item {index}: needs a string 'type'")
            missing = [key for key in _REQUIRED_FIELDS.get(kind, ()) if key not in item]
            if missing:
                raise ValueError(f"item {index} ({kind}): missing {', '.join(missing)}")
            if kind == "function_call" and not isinstance(item["arguments"], str):
                raise ValueError(f"item {index} (function_call): 'arguments' must be a JSON string")
        return items

    @model_validator(mode="after")
    def _one_outcome(self) -> Turn:
        if sum((self.http_error is not None, self.stream_error is not None, self.hang)) > 1:
            raise ValueError("a turn has at most one of http_error, stream_error, hang")
        if self.output and (self.http_error is not None or self.hang):
            raise ValueError("http_error and hang turns send no output items")
        return self

    @property
    def tool_calls(self) -> int:
        return sum(item["type"] in CALL_TYPES for item in self.output)


class Cassette(_Model):
    """A recorded (or hand-written) model trajectory for one task, replayed as a script."""

    format: Literal["oneshot-cassette/1"] = CASSETTE_FORMAT
    model: str = ""
    task_id: str = ""
    turns: list[Turn] = Field(..., min_length=1)


JUDGE_CASSETTE_FORMAT: Final = "oneshot-judge-cassette/1"


class JudgedDiff(_Model):
    """A judge's recorded answer to one rubric, and the diff it judged."""

    diff_sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the diff.patch judged")
    turns: list[Turn] = Field(..., min_length=1)
    """The judge model's response(s), as the Responses API sent them: the answer is an ``output_text``
    message holding the verdict's JSON; earlier turns may be failures the judge retried."""


class JudgeCassette(_Model):
    """Recorded judge answers for one agent cassette (``cassettes/judge/<agent cassette>.json``).

    A replayed judgement fits only the diff it judged: a replay for another diff is refused."""

    format: Literal["oneshot-judge-cassette/1"] = JUDGE_CASSETTE_FORMAT
    model: str = ""
    """The judge model it was recorded with (informational)."""
    task_id: str = ""
    rubrics: dict[str, JudgedDiff] = Field(..., min_length=1)


def load_cassette(path: Path) -> Cassette:
    """Read a cassette file.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    return _load(path, Cassette)


def load_judge_cassette(path: Path) -> JudgeCassette:
    """Read a judge cassette file.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    return _load(path, JudgeCassette)


_Loaded = TypeVar("_Loaded", Cassette, JudgeCassette)


def _load(path: Path, model: type[_Loaded]) -> _Loaded:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise TaskFormatError(str(path), None, "file not found") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
        raise TaskFormatError(str(path), field or None, str(error["msg"]).removeprefix("Value error, ")) from None


# -- item builders: the shapes codex 0.169 accepts ------------------------------------------


def message(text: str) -> dict[str, Any]:
    """A final assistant message (a response holding only messages ends the codex run)."""
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def exec_command(
    cmd: str, *, workdir: str | None = None, login: bool = False, call_id: str | None = None
) -> dict[str, Any]:
    """A call of codex's ``exec_command`` tool (``login=False`` runs ``bash -c``, not ``-lc``)."""
    arguments: dict[str, Any] = {"cmd": cmd, "login": login}
    if workdir is not None:
        arguments["workdir"] = workdir
    return _call("function_call", call_id, name="exec_command", arguments=json.dumps(arguments))


def apply_patch(patch: str, *, call_id: str | None = None) -> dict[str, Any]:
    """A call of codex's freeform ``apply_patch`` tool (``*** Begin Patch`` ... ``*** End Patch``)."""
    return _call("custom_tool_call", call_id, name="apply_patch", input=patch)


def mcp_call(namespace: str, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None) -> dict[str, Any]:
    """A call of MCP tool ``name`` of server namespace ``namespace`` (e.g. ``mcp__oneshot``)."""
    return _call("function_call", call_id, namespace=namespace, name=name, arguments=json.dumps(dict(arguments)))


def _call(kind: str, call_id: str | None, **fields: str) -> dict[str, Any]:
    return {"type": kind, **({"call_id": call_id} if call_id else {}), **fields}


def insufficient_quota(message_text: str = "You exceeded your current quota.") -> HttpError:
    """The 429 the real API sends when the quota is spent; codex stops at once."""
    error = {"type": "insufficient_quota", "code": "insufficient_quota", "message": message_text, "param": None}
    return HttpError(status=429, body={"error": error})
