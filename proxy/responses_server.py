"""Scripted OpenAI Responses-API server: the model stand-in for tests and the replay engine.

No model API is reachable offline, so this server answers ``POST .../responses`` the way
the real API does (SSE, one ``response.output_item.done`` per item, ``response.completed``
with ``usage``) from a *script*: a list of turns, one turn per model response. Replaying a
recorded session is the same thing with the script read from a cassette file.

Routing: each script is registered under a key and served at its own base URL,
``http://127.0.0.1:PORT/s/<key>/v1`` (codex posts to ``{base_url}/responses``); the
``default`` key is also served at ``http://127.0.0.1:PORT/v1``. Many clients may share one
server. The step is found statelessly: codex re-sends the whole history each time, so the
number of ``function_call_output`` / ``custom_tool_call_output`` items in the request
``input`` says how many tool calls were answered, hence which turn comes next. Turns without
tool calls (errors) do not advance that count; repeated requests at the same count (retries)
take the following such turns in order, per ``session-id`` header. Every request is logged
per key and ``session-id`` (:meth:`ScriptedResponsesServer.requests`).

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
known kinds are checked for their required fields, and a missing ``call_id`` is filled in.
Run ``python -m proxy.responses_server [CASSETTE...]`` to serve cassettes by hand.
"""

from __future__ import annotations

import argparse
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_oneshot.errors import TaskFormatError

__all__ = [
    "CASSETTE_FORMAT",
    "Cassette",
    "HttpError",
    "ReceivedRequest",
    "ScriptedResponsesServer",
    "StreamError",
    "Turn",
    "Usage",
    "apply_patch",
    "exec_command",
    "insufficient_quota",
    "load_cassette",
    "mcp_call",
    "message",
]

CASSETTE_FORMAT: Final = "oneshot-cassette/1"
DEFAULT_KEY: Final = "default"
TOOL_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
_CALL_TYPES = frozenset({"function_call", "custom_tool_call"})
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
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_input_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_output_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


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
        return sum(item["type"] in _CALL_TYPES for item in self.output)


class Cassette(_Model):
    """A recorded (or hand-written) model trajectory for one task, replayed as a script."""

    format: Literal["oneshot-cassette/1"] = CASSETTE_FORMAT
    model: str = ""
    task_id: str = ""
    turns: list[Turn] = Field(..., min_length=1)


def load_cassette(path: Path) -> Cassette:
    """Read a cassette file.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    try:
        return Cassette.model_validate_json(path.read_bytes())
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


# -- the server -------------------------------------------------------------------------------


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
                if item["type"] in _CALL_TYPES
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
    """A threaded loopback server answering Responses-API requests from registered scripts.

    Usable as a context manager; :attr:`base_url` serves the ``default`` key and
    :meth:`add_script` returns the base URL of any other key.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.scripted = self
        self._host = host
        self._scripts: dict[str, _Script] = {}
        self._log: dict[str, list[ReceivedRequest]] = defaultdict(list)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        """Set by :meth:`stop`; releases hanging and sleeping handlers."""
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self._httpd.server_port}"

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

    def start(self) -> ScriptedResponsesServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="responses-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release every handler still waiting. Idempotent."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

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


def _answered_count(body: Mapping[str, Any]) -> int:
    return sum(isinstance(item, dict) and item.get("type") in TOOL_OUTPUT_TYPES for item in body.get("input") or [])


def _sse(kind: str, sequence: int, **payload: Any) -> bytes:
    data = json.dumps({"type": kind, "sequence_number": sequence, **payload})
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _stream_events(turn: Turn, model: str) -> Iterator[bytes]:
    """The SSE events of one scripted response, in the order the real API sends them."""
    response: dict[str, Any] = {"id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time())}
    response.update(model=model, status="in_progress", output=[])
    sequence = itertools.count()
    yield _sse("response.created", next(sequence), response=response)
    for index, item in enumerate(turn.output):
        yield _sse("response.output_item.added", next(sequence), output_index=index, item=item)
        yield _sse("response.output_item.done", next(sequence), output_index=index, item=item)
    if turn.stream_error is not None:
        error = {"code": turn.stream_error.code, "message": turn.stream_error.message}
        yield _sse("response.failed", next(sequence), response={**response, "status": "failed", "error": error})
        return
    done = {**response, "status": "completed", "output": turn.output, "usage": turn.usage.to_api()}
    yield _sse("response.completed", next(sequence), response=done)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    scripted: ScriptedResponsesServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oneshot-scripted-responses/1"

    @property
    def scripted(self) -> ScriptedResponsesServer:
        return cast(_Server, self.server).scripted

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def do_POST(self) -> None:
        key = self._script_key()
        body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if key is None:
            self._json(HTTPStatus.NOT_FOUND, _error("not_found", f"no route for POST {self.path}"))
            return
        try:
            body = json.loads(body_bytes)
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, _error("invalid_json", "request body is not JSON"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        outcome = self.scripted._answer(key, headers, body)
        if isinstance(outcome, str):
            self._json(HTTPStatus.BAD_REQUEST, _error("script_error", outcome))
            return
        stopping = self.scripted.stopping
        if stopping.wait(outcome.latency_sec) or (outcome.hang and stopping.wait()):
            self.close_connection = True  # server stopping: drop the request unanswered
            return
        if outcome.http_error is not None:
            self._json(outcome.http_error.status, outcome.http_error.body)
            return
        self._stream(_stream_events(outcome, str(body.get("model", ""))))

    def _script_key(self) -> str | None:
        path = self.path.split("?", 1)[0]
        if path == "/v1/responses":
            return DEFAULT_KEY
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "s" and parts[3:] == ["v1", "responses"]:
            return parts[2]
        return None

    def _json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: Iterator[bytes]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            for event in events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # codex hangs up right after response.completed


def _error(code: str, text: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": text, "param": None}}


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
