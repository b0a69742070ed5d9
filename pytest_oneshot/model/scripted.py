"""Scripted OpenAI Responses-API server: the model stand-in for tests and the replay engine.

No model API is reachable offline, so this server answers ``POST .../responses`` the way
the real API does (SSE, one ``response.output_item.done`` per item, ``response.completed``
with ``usage``; or, for a request without ``"stream": true``, the whole response object as JSON,
as a rubric judge asks) from a *script*: a list of turns (:mod:`pytest_oneshot.model.cassette`), one
turn per model response. Replaying a recorded session is the same thing with the script read
from a cassette file.

Routing: each script is registered under a key and served at its own base URL,
``http://127.0.0.1:PORT/s/<key>/v1`` (codex posts to ``{base_url}/responses``); the
``default`` key is also served at ``http://127.0.0.1:PORT/v1``. The same turns answer the
chat-completions and legacy completions shapes (``{base_url}/chat/completions``,
``{base_url}/completions``, never streamed), each ``message`` item of a turn one of its
``choices``: what the Codex Runner asks (:mod:`pytest_oneshot.runner.completions`). Many clients may share one
server. The step is found statelessly: codex re-sends the whole history each time, so the
number of ``function_call_output`` / ``custom_tool_call_output`` items in the request
``input`` says how many tool calls were answered, hence which turn comes next. Turns without
tool calls (errors) do not advance that count; repeated requests at the same count (retries)
take the following such turns in order, per ``session-id`` header. Every request is logged
per key and ``session-id`` (:meth:`ScriptedResponsesServer.requests`).

Run ``python -m pytest_oneshot.model.scripted [CASSETTE...]`` to serve cassettes by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from pytest_oneshot.model.cassette import CALL_TYPES, Cassette, Turn, load_cassette, message
from pytest_oneshot.model.serving import BackgroundServer, api_error, json_response

__all__ = ["DEFAULT_KEY", "TOOL_OUTPUT_TYPES", "ReceivedRequest", "ScriptedResponsesServer"]

DEFAULT_KEY: Final = "default"
TOOL_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it, and the turn it was answered with."""

    key: str
    session_id: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    turn: int | None
    """Index of the scripted turn served, or None when no turn matched (answered 400)."""

    @property
    def input(self) -> list[dict[str, Any]]:
        return list(self.body.get("input") or [])

    def tool_outputs(self) -> dict[str, str]:
        """``call_id`` -> output text of every tool result in the input (history included)."""
        outputs: dict[str, str] = {}
        for item in self.input:
            if item.get("type") in TOOL_OUTPUT_TYPES:
                output = item.get("output", "")
                if isinstance(output, list):
                    output = "".join(part.get("text", "") for part in output if isinstance(part, dict))
                outputs[str(item.get("call_id"))] = str(output)
        return outputs


@dataclass(frozen=True)
class _Script:
    """Turns with call ids filled in, and where each turn starts in the tool-output count."""

    turns: tuple[Turn, ...]
    answered_before: tuple[int, ...]

    @classmethod
    def build(cls, key: str, turns: Sequence[Turn]) -> _Script:
        filled: list[Turn] = []
        counts: list[int] = []
        answered = 0
        for index, turn in enumerate(turns):
            output = [
                {**item, "call_id": item.get("call_id") or f"call_{key}_{index}_{position}"}
                if item["type"] in CALL_TYPES
                else item
                for position, item in enumerate(turn.output)
            ]
            filled.append(turn.model_copy(update={"output": output}))
            counts.append(answered)
            answered += turn.tool_calls
        return cls(tuple(filled), tuple(counts))

    def pick(self, answered: int, earlier_at_same_count: int) -> int | None:
        """The turn after ``answered`` tool outputs; retries at that count take the next error-free turns."""
        candidates = [index for index, count in enumerate(self.answered_before) if count == answered]
        if not candidates:
            return None
        return candidates[min(earlier_at_same_count, len(candidates) - 1)]


class ScriptedResponsesServer:
    """A loopback server answering Responses-API requests from registered scripts.

    Usable as a context manager; :attr:`base_url` serves the ``default`` key and
    :meth:`add_script` returns the base URL of any other key.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = BackgroundServer(self._handle, host=host, port=port, name="responses-server")
        self._scripts: dict[str, _Script] = {}
        self._log: dict[str, list[ReceivedRequest]] = defaultdict(list)
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = defaultdict(int)
        self._most_in_flight: dict[str, int] = defaultdict(int)

    @property
    def root_url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def url_for(self, key: str) -> str:
        return f"{self.root_url}/s/{key}/v1"

    def add_script(self, key: str, script: Sequence[Turn] | Cassette) -> str:
        """Register (or replace) the script served under ``key``; return its base URL."""
        if not key or "/" in key:
            raise ValueError(f"script key must be non-empty without '/' (got {key!r})")
        turns = script.turns if isinstance(script, Cassette) else script
        with self._lock:
            self._scripts[key] = _Script.build(key, turns)
        return self.url_for(key)

    def requests(self, key: str = DEFAULT_KEY, session_id: str | None = None) -> list[ReceivedRequest]:
        """Requests received for ``key`` in arrival order (only ``session_id``'s when given)."""
        with self._lock:
            return [r for r in self._log.get(key, []) if session_id is None or r.session_id == session_id]

    def sessions(self, key: str = DEFAULT_KEY) -> dict[str, list[ReceivedRequest]]:
        """``session-id`` header -> that session's requests, for ``key``."""
        sessions: dict[str, list[ReceivedRequest]] = defaultdict(list)
        for received in self.requests(key):
            sessions[received.session_id].append(received)
        return dict(sessions)

    def most_in_flight(self, key: str = DEFAULT_KEY) -> int:
        """The most requests for ``key`` the server was answering at once (how well a client bounds itself)."""
        with self._lock:
            return self._most_in_flight[key]

    def start(self) -> ScriptedResponsesServer:
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests still waiting (``hang``, ``latency_sec``) are dropped unanswered. Idempotent."""
        self._server.stop()

    def __enter__(self) -> ScriptedResponsesServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answer(self, key: str, headers: Mapping[str, str], body: dict[str, Any]) -> Turn | str:
        """Log the request and choose its turn (or say why there is none)."""
        session_id = headers.get("session-id", "")
        answered = _answered_count(body)
        with self._lock:
            script = self._scripts.get(key)
            log = self._log[key]
            index: int | None = None
            if script is None:
                outcome: Turn | str = (
                    f"no script registered under key {key!r} (known: {', '.join(sorted(self._scripts))})"
                )
            else:
                earlier = sum(r.session_id == session_id and _answered_count(r.body) == answered for r in log)
                index = script.pick(answered, earlier)
                outcome = (
                    script.turns[index]
                    if index is not None
                    else f"script {key!r} has no turn after {answered} tool outputs (script exhausted or out of step)"
                )
            log.append(ReceivedRequest(key, session_id, headers, body, index))
        return outcome

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = _route(request.path) if request.method == "POST" else None
        if route is None:
            return api_error(HTTPStatus.NOT_FOUND, "not_found", f"no route for {request.method} {request.path}")
        key, shape = route
        try:
            body = json.loads(await request.read())
        except ValueError:
            return api_error(HTTPStatus.BAD_REQUEST, "invalid_json", "request body is not JSON")
        headers = {name.lower(): value for name, value in request.headers.items()}
        outcome = self._answer(key, headers, body)
        if isinstance(outcome, str):
            return api_error(HTTPStatus.BAD_REQUEST, "script_error", outcome)
        with self._lock:
            self._in_flight[key] += 1
            self._most_in_flight[key] = max(self._most_in_flight[key], self._in_flight[key])
        try:
            return await self._respond(request, body, outcome, shape)
        finally:
            with self._lock:
                self._in_flight[key] -= 1

    async def _respond(
        self, request: web.Request, body: dict[str, Any], outcome: Turn, shape: str
    ) -> web.StreamResponse:
        await asyncio.sleep(outcome.latency_sec)
        if outcome.hang:
            await asyncio.Event().wait()  # until stop() cancels this handler
        if outcome.http_error is not None:
            return json_response(outcome.http_error.status, outcome.http_error.body)
        if shape != "responses":
            return json_response(HTTPStatus.OK, _choices(shape, str(body.get("model", "")), outcome))
        if not body.get("stream"):  # the API's default: the whole response object as JSON
            return json_response(HTTPStatus.OK, _final_response(_new_response(str(body.get("model", ""))), outcome))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # codex hangs up right after response.completed
            # A scripted response is ready at once: one write, its end included, so it leaves in one segment
            # (a real model's events come spaced out, and the limiter and the recorder pass each on as it comes).
            await response.write_eof(b"".join(_stream_events(outcome, str(body.get("model", "")))))
        return response


_SHAPES: Final = {"responses": "responses", "chat/completions": "chat", "completions": "completions"}


def _route(path: str) -> tuple[str, str] | None:
    """The script key and the request shape (``responses``, ``chat``, ``completions``) of a POST path."""
    parts = path.split("/")
    key = DEFAULT_KEY
    if len(parts) > 3 and parts[1] == "s":
        key, parts = parts[2], ["", *parts[3:]]
    if len(parts) < 3 or parts[1] != "v1" or "/".join(parts[2:]) not in _SHAPES:
        return None
    return key, _SHAPES["/".join(parts[2:])]


def _choices(shape: str, model: str, turn: Turn) -> dict[str, Any]:
    """A turn as a (chat) completions answer: each ``message`` item's text is one choice."""
    texts = [
        "".join(str(part.get("text", "")) for part in item.get("content") or [] if isinstance(part, dict))
        for item in turn.output
        if item.get("type") == "message"
    ]
    if shape == "chat":
        choices: list[dict[str, Any]] = [
            {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for index, text in enumerate(texts)
        ]
    else:
        choices = [
            {"index": index, "text": text, "logprobs": None, "finish_reason": "stop"}
            for index, text in enumerate(texts)
        ]
    usage = {"prompt_tokens": turn.usage.input_tokens, "completion_tokens": turn.usage.output_tokens}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    kind = "chat.completion" if shape == "chat" else "text_completion"
    return {"id": f"cmpl_{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage}  # fmt: skip


def _answered_count(body: Mapping[str, Any]) -> int:
    return sum(isinstance(item, dict) and item.get("type") in TOOL_OUTPUT_TYPES for item in body.get("input") or [])


def _sse(kind: str, sequence: int, **payload: Any) -> bytes:
    data = json.dumps({"type": kind, "sequence_number": sequence, **payload})
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _new_response(model: str) -> dict[str, Any]:
    response: dict[str, Any] = {"id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time())}
    response.update(model=model, status="in_progress", output=[])
    return response


def _final_response(response: dict[str, Any], turn: Turn) -> dict[str, Any]:
    """The response object once done: ``completed`` with its output and usage, or ``failed`` with the
    turn's ``stream_error`` (in a stream, ``response.failed``; unstreamed, the object's ``error``)."""
    if turn.stream_error is not None:
        error = {"code": turn.stream_error.code, "message": turn.stream_error.message}
        return {**response, "status": "failed", "error": error}
    return {**response, "status": "completed", "output": turn.output, "usage": turn.usage.to_api()}


def _stream_events(turn: Turn, model: str) -> Iterator[bytes]:
    """The SSE events of one scripted response, in the order the real API sends them."""
    response = _new_response(model)
    sequence = itertools.count()
    yield _sse("response.created", next(sequence), response=response)
    for index, item in enumerate(turn.output):
        yield _sse("response.output_item.added", next(sequence), output_index=index, item=item)
        yield _sse("response.output_item.done", next(sequence), output_index=index, item=item)
    final = _final_response(response, turn)
    yield _sse(f"response.{final['status']}", next(sequence), response=final)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve cassettes as a scripted Responses API on 127.0.0.1")
    parser.add_argument("cassettes", nargs="*", type=Path, help="Cassette files, each served under its file stem")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0 picks a free one)")
    parser.add_argument("--message", default="Hello from the scripted Responses server.", help="Default reply")
    args = parser.parse_args(argv)
    server = ScriptedResponsesServer(port=args.port)
    server.add_script(DEFAULT_KEY, [Turn(output=[message(args.message)])])
    print(f"{DEFAULT_KEY}\t{server.base_url}", flush=True)
    for path in args.cassettes:
        print(f"{path.stem}\t{server.add_script(path.stem, load_cassette(path))}", flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
