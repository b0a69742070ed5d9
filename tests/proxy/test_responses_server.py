"""The scripted Responses-API server and the token limiter, spoken to over real HTTP.

Codex itself drives both in tests/agent/test_codex.py; here the wire format, the step
logic, cassettes and the limiter's accounting are checked one by one.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from oneshot_shared.sse import parse_events
from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.model.cassette import (
    Cassette,
    HttpError,
    StreamError,
    Turn,
    Usage,
    apply_patch,
    exec_command,
    insufficient_quota,
    load_cassette,
    mcp_call,
    message,
)
from pytest_oneshot.model.limiter import TokenLimiter
from pytest_oneshot.model.scripted import ScriptedResponsesServer


@pytest.fixture
def server() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as running:
        yield running


def post(
    base_url: str,
    input_items: list[dict[str, Any]] | None = None,
    *,
    session: str = "s1",
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """POST ``{base_url}/responses`` as codex does; return status, content type and body."""
    body = json.dumps({"model": "m", "stream": True, "input": input_items or []}).encode()
    request = urllib.request.Request(
        f"{base_url}/responses",
        data=body,
        headers={"Content-Type": "application/json", "session-id": session, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def events(body: bytes) -> list[dict[str, Any]]:
    return [event.data for event in parse_events(body.decode())]


def tool_output(call_id: str, text: str = "ok") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def test_stream_has_the_shape_codex_needs(server: ScriptedResponsesServer) -> None:
    items = [exec_command("ls", call_id="c1"), mcp_call("mcp__oneshot", "repo_start_task_v1", {"x": 1})]
    server.add_script("default", [Turn(output=items, usage=Usage(input_tokens=7, output_tokens=3))])

    status, content_type, body = post(server.base_url)

    assert (status, content_type) == (200, "text/event-stream")
    kinds = [event["type"] for event in events(body)]
    assert kinds == ["response.created"] + ["response.output_item.added", "response.output_item.done"] * 2 + [
        "response.completed"
    ]
    done = [event["item"] for event in events(body) if event["type"] == "response.output_item.done"]
    assert done[0] == {
        "type": "function_call",
        "call_id": "c1",
        "name": "exec_command",
        "arguments": '{"cmd": "ls", "login": false}',
    }
    assert done[1]["namespace"] == "mcp__oneshot" and done[1]["call_id"], "a missing call_id is filled in"
    completed = events(body)[-1]["response"]
    assert completed["id"].startswith("resp_") and completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == 7 and completed["usage"]["total_tokens"] == 10


def test_step_is_the_number_of_tool_outputs_in_the_input(server: ScriptedResponsesServer) -> None:
    url = server.add_script(
        "k",
        [
            Turn(output=[exec_command("a", call_id="a"), apply_patch("*** Begin Patch\n*** End Patch\n", call_id="b")]),
            Turn(output=[message("second")]),
        ],
    )
    history = [tool_output("a", "out-a"), {"type": "custom_tool_call_output", "call_id": "b", "output": "out-b"}]

    first = events(post(url)[2])
    second = events(post(url, history)[2])

    assert first[-1]["response"]["output"][0]["name"] == "exec_command"
    assert second[-1]["response"]["output"] == [message("second")]
    log = server.requests("k")
    assert [r.turn for r in log] == [0, 1]
    assert log[1].tool_outputs() == {"a": "out-a", "b": "out-b"}


def test_an_out_of_step_request_gets_a_clear_400(server: ScriptedResponsesServer) -> None:
    url = server.add_script("k", [Turn(output=[exec_command("a")]), Turn(output=[message("done")])])

    status, _, body = post(url, [tool_output("x"), tool_output("y")])

    assert status == 400
    assert "script 'k' has no turn after 2 tool outputs" in json.loads(body)["error"]["message"]
    assert server.requests("k")[0].turn is None


def test_an_unknown_key_names_the_known_ones(server: ScriptedResponsesServer) -> None:
    server.add_script("known", [Turn(output=[message("hi")])])

    status, _, body = post(server.url_for("nope"))

    assert status == 400
    assert "no script registered under key 'nope' (known: known)" in json.loads(body)["error"]["message"]


def test_http_error_turn_answers_with_status_and_body(server: ScriptedResponsesServer) -> None:
    url = server.add_script("k", [Turn(http_error=insufficient_quota("spent"))])

    status, content_type, body = post(url)

    assert (status, content_type) == (429, "application/json")
    assert json.loads(body)["error"] == {
        "type": "insufficient_quota",
        "code": "insufficient_quota",
        "message": "spent",
        "param": None,
    }


def test_stream_error_turn_ends_with_response_failed(server: ScriptedResponsesServer) -> None:
    url = server.add_script(
        "k", [Turn(output=[message("partial")], stream_error=StreamError(code="server_error", message="boom"))]
    )

    sent = events(post(url)[2])

    assert [event["type"] for event in sent][-1] == "response.failed"
    assert sent[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}
    assert not any(event["type"] == "response.completed" for event in sent)


def test_retries_at_the_same_step_take_the_next_turn_per_session(server: ScriptedResponsesServer) -> None:
    url = server.add_script("k", [Turn(http_error=HttpError(status=500)), Turn(output=[message("recovered")])])

    assert post(url, session="a")[0] == 500
    assert post(url, session="b")[0] == 500, "another session starts at the first turn"
    assert events(post(url, session="a")[2])[-1]["response"]["output"] == [message("recovered")]
    assert {session: [r.turn for r in log] for session, log in server.sessions("k").items()} == {"a": [0, 1], "b": [0]}


def test_hang_turn_is_released_when_the_server_stops() -> None:
    server = ScriptedResponsesServer().start()
    url = server.add_script("k", [Turn(hang=True)])
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(post(url)[0])
        except (urllib.error.URLError, ConnectionError) as exc:
            outcome.append(type(exc))

    thread = threading.Thread(target=client)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not outcome, "a hang turn sends nothing"
    server.stop()
    thread.join(30)
    assert not thread.is_alive() and outcome and outcome[0] != 200


@pytest.mark.parametrize(
    ("turn", "problem"),
    [
        ({"output": [{"type": "function_call", "name": "x"}]}, "missing arguments"),
        ({"output": [{"type": "function_call", "name": "x", "arguments": {}}]}, "'arguments' must be a JSON string"),
        ({"hang": True, "http_error": {"status": 429}}, "at most one of"),
        ({"latency_sec": -1}, "greater than or equal to 0"),
    ],
)
def test_turn_validation_names_the_problem(turn: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Turn.model_validate(turn)


def test_cassette_round_trips_through_its_file(tmp_path: Path, server: ScriptedResponsesServer) -> None:
    cassette = Cassette(model="gpt-x", task_id="t", turns=[Turn(output=[message("from tape")], latency_sec=0.01)])
    path = tmp_path / "cassettes" / "gpt-x.json"
    path.parent.mkdir()
    path.write_text(cassette.model_dump_json(indent=2))

    loaded = load_cassette(path)

    assert loaded == cassette
    assert events(post(server.add_script("tape", loaded))[2])[-1]["response"]["output"] == [message("from tape")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"format": "oneshot-cassette/1", "turns": []}, r"cassette.json: turns: List should have at least 1 item"),
        (
            {"turns": [{"output": [{"type": "message"}]}]},
            r"cassette.json: turns\[0\].output: item 0 \(message\): missing content",
        ),
        ({"format": "other/2", "turns": [{}]}, r"cassette.json: format: Input should be 'oneshot-cassette/1'"),
    ],
)
def test_bad_cassette_names_file_and_field(tmp_path: Path, content: dict[str, Any], expected: str) -> None:
    path = tmp_path / "cassette.json"
    path.write_text(json.dumps(content))

    with pytest.raises(TaskFormatError, match=expected):
        load_cassette(path)


def test_cli_serves_a_cassette(tmp_path: Path) -> None:
    """``python -m pytest_oneshot.model.scripted CASSETTE`` prints each key's URL and serves it."""
    path = tmp_path / "demo.json"
    path.write_text(Cassette(turns=[Turn(output=[message("from the CLI")])]).model_dump_json())
    repo_root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_oneshot.model.scripted", str(path)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().strip().split("\t") for _ in range(2))
        assert events(post(urls["demo"])[2])[-1]["response"]["output"] == [message("from the CLI")]
        assert "Hello" in events(post(urls["default"])[2])[-1]["response"]["output"][0]["content"][0]["text"]
    finally:
        process.terminate()
        process.wait(30)


# -- token limiter ----------------------------------------------------------------------------------


def test_limiter_counts_usage_and_refuses_once_the_budget_is_spent(server: ScriptedResponsesServer) -> None:
    upstream = server.add_script(
        "k",
        [
            Turn(output=[exec_command("a")], usage=Usage(input_tokens=80, output_tokens=20, cached_input_tokens=5)),
            Turn(output=[message("never reached")]),
        ],
    )
    with TokenLimiter() as limiter:
        route = limiter.add_route(upstream, limit=100)

        first = post(route.base_url)
        refused = post(route.base_url, [tool_output(events(first[2])[-1]["response"]["output"][0]["call_id"])])

    assert first[0] == 200 and events(first[2])[-1]["type"] == "response.completed", "the stream passes through whole"
    assert route.usage.total_tokens == 100 and route.usage.cached_input_tokens == 5
    assert refused[0] == 429
    assert json.loads(refused[2])["error"]["code"] == "insufficient_quota"
    assert route.refused == 1
    assert len(server.requests("k")) == 1, "the refused request never reached the model"


def test_limiter_sends_its_key_and_drops_the_clients(server: ScriptedResponsesServer) -> None:
    upstream = server.add_script("k", [Turn(output=[message("hi")])])
    with TokenLimiter() as limiter:
        keyed = limiter.add_route(upstream, api_key="sk-canary-limiter")
        keyless = limiter.add_route(upstream)
        post(keyed.base_url, headers={"Authorization": "Bearer from-the-sandbox"}, session="keyed")
        post(keyless.base_url, headers={"Authorization": "Bearer from-the-sandbox"}, session="keyless")

    assert server.requests("k", "keyed")[0].headers["authorization"] == "Bearer sk-canary-limiter"
    assert "authorization" not in server.requests("k", "keyless")[0].headers
    assert "sk-canary-limiter" not in repr(keyed)


def test_limiter_unknown_route_and_unreachable_upstream() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with TokenLimiter() as limiter:
        route = limiter.add_route(f"http://127.0.0.1:{closed_port}/v1")
        unknown = post(route.base_url.rsplit("/", 1)[0] + "/nope")
        unreachable = post(route.base_url)

    assert unknown[0] == 404
    assert unreachable[0] == 502 and "model endpoint" in json.loads(unreachable[2])["error"]["message"]


def test_limiter_streams_without_buffering() -> None:
    """The first event reaches the client while the upstream is still holding the rest back."""
    release = threading.Event()

    class SlowUpstream(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'data: {"type":"response.created"}\n\n')
            self.wfile.flush()
            if release.wait(10):  # set by the client only once it has read the first event
                self.wfile.write(b'data: {"type":"response.completed","response":{"usage":{"input_tokens":3}}}\n\n')

        def log_message(self, *args: Any) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), SlowUpstream)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with TokenLimiter() as limiter:
            route = limiter.add_route(f"http://127.0.0.1:{upstream.server_address[1]}/v1")
            request = urllib.request.Request(f"{route.base_url}/responses", data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                first = response.readline() + response.readline()
                release.set()
                rest = response.read()
    finally:
        upstream.shutdown()
        upstream.server_close()

    assert first == b'data: {"type":"response.created"}\n\n'
    assert b"response.completed" in rest
    assert route.usage.input_tokens == 3
