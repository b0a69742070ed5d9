"""The tracing proxy end to end: real mitmdump in reverse/forward mode against loopback servers.

Upstreams: the scripted Responses-API server, and a raw SSE server (below) whose send times we
know, for the streaming, hang-up, kill and canary cases.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from oneshot_shared import sse
from proxy import cleaner, tracestore
from proxy.manage import ProxyError, ProxyHandle, start_proxy
from pytest_oneshot.model.cassette import Cassette, Turn, apply_patch, exec_command, mcp_call, message
from pytest_oneshot.model.scripted import ScriptedResponsesServer

CANARY = "sk-proj-CANARY0123456789abcdefXYZ"
CANARIES = (CANARY, "hf_CANARYabcdefghijklmnopqrstuvwxyz01", "ghp_CANARYabcdefghijklmnopqrstuvwxyz0123")


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mitm-confdir")  # one CA for the whole run


@pytest.fixture
def start(mitmdump: Path, confdir: Path, tmp_path: Path) -> Iterator[Callable[..., ProxyHandle]]:
    """Start proxies logging into tmp_path; all stopped at teardown."""
    handles: list[ProxyHandle] = []

    def _start(upstream: str | None, db: Path, session_id: str | None = None, **kwargs: Any) -> ProxyHandle:
        log = tmp_path / f"mitmdump-{len(handles)}.log"
        handle = start_proxy(upstream, db, session_id, mitmdump=mitmdump, confdir=confdir, log_path=log, **kwargs)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        handle.stop()


@pytest.fixture
def scripted() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as server:
        yield server


class RawSse(ThreadingHTTPServer):
    """SSE upstream with known send times; ``release`` frees held streams."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RawSseHandler)
        self.sent: list[float] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _event(kind: str, **payload: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


class _RawSseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RawSse

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        if self.path.startswith("/canary"):
            self.send_header("Set-Cookie", f"session={CANARY}; HttpOnly")
        self.end_headers()
        self.close_connection = True
        try:
            getattr(self, "_" + self.path.strip("/").split("/")[0].split("?")[0])()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _slow(self) -> None:
        for index in range(4):
            if index:
                time.sleep(0.4)
            self._chunk(_event("response.output_text.delta", delta=f"part{index}"))
            self.server.sent.append(time.time())

    def _quick(self) -> None:
        self._chunk(_event("response.completed", response={"id": "resp_q", "status": "completed", "output": []}))

    def _hold(self) -> None:
        self._chunk(_event("response.created", response={"id": "resp_hold", "status": "in_progress"}))
        self.server.release.wait(30)

    def _linger(self) -> None:
        item = message("done")
        self._chunk(_event("response.output_item.done", output_index=0, item=item))
        self._chunk(_event("response.completed", response={"id": "resp_l", "status": "completed", "output": [item]}))
        self.server.release.wait(30)  # like the real API: the client hangs up first

    def _canary(self) -> None:
        event = _event("response.output_text.delta", delta=f"your key is {CANARY} ok")
        cut = event.index(b"CANARY")
        self._chunk(event[:cut])  # the key arrives split across two chunks
        self._chunk(event[cut:])
        done = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": f"tokens: {' '.join(CANARIES)}"}],
        }
        self._chunk(_event("response.output_item.done", output_index=0, item=done))
        self._chunk(_event("response.completed", response={"id": "resp_c", "status": "completed", "output": [done]}))


@pytest.fixture
def raw_sse() -> Iterator[RawSse]:
    server = RawSse()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _rows(db: Path) -> list[tracestore.RawTrace]:
    conn = tracestore.connect(db, create=False)
    try:
        return list(tracestore.read_since(conn))
    finally:
        conn.close()


def _wait_rows(db: Path, count: int, timeout: float = 20) -> list[tracestore.RawTrace]:
    """Rows are written when mitmproxy finishes a flow, just after the client got its last byte."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(db) if db.exists() else []
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_sse_passes_through_unbuffered(start: Callable[..., ProxyHandle], raw_sse: RawSse, tmp_path: Path) -> None:
    proxy = start(raw_sse.url, tmp_path / "raw.sqlite3", session_id="stream")
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/slow", body=b"{}", headers={"content-type": "application/json"})
    response = conn.getresponse()
    arrived = []
    while line := response.readline():
        if line.startswith(b"data:"):
            arrived.append(time.time())
    conn.close()

    assert len(arrived) == len(raw_sse.sent) == 4
    # Each event reached the client before the server even sent the next one: nothing buffered.
    assert all(arrived[i] < raw_sse.sent[i + 1] for i in range(3)), (arrived, raw_sse.sent)
    (row,) = _wait_rows(tmp_path / "raw.sqlite3", 1)
    recorded = [row.ts_ms + offset for offset in row.meta["sse_event_ms"]]
    assert len(recorded) == 4 and all(recorded[i] < raw_sse.sent[i + 1] * 1000 for i in range(3))
    assert row.meta["timings"]["first_byte_ms"] <= row.meta["timings"]["response_end_ms"]
    assert [e.data["delta"] for e in sse.parse_events(row.response["_raw"])] == ["part0", "part1", "part2", "part3"]


def test_client_hangup_after_completed_is_recorded_once(
    start: Callable[..., ProxyHandle], raw_sse: RawSse, tmp_path: Path
) -> None:
    db = tmp_path / "raw.sqlite3"
    proxy = start(raw_sse.url, db, session_id="hangup")
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/linger", body=b"{}")
    response = conn.getresponse()
    while b"response.completed" not in response.readline():
        pass
    conn.close()  # as codex does, before the server ends the stream

    (row,) = _wait_rows(db, 1)
    raw_sse.release.set()
    proxy.stop()  # the shutdown hook must not record the flow a second time
    (again,) = _rows(db)
    assert again.id == row.id and row.meta["complete"] is False and row.meta["error"]
    output = cleaner.model_output(row.response)
    assert (
        output is not None
        and output["status"] == "completed"
        and output["messages"] == [{"role": "assistant", "text": "done"}]
    )


def test_concurrent_sessions_every_row_attributed(
    start: Callable[..., ProxyHandle], scripted: ScriptedResponsesServer, tmp_path: Path
) -> None:
    db = tmp_path / "raw.sqlite3"
    scripted.add_script("k", [Turn(output=[message("ok")])])
    shared = start(scripted.root_url, db)  # no session of its own: headers decide
    trial = start(scripted.root_url, db, session_id="trial-b")  # a second writer on the same file
    per_thread, expected, statuses = 40, {}, []

    def client(index: int) -> None:
        proxy = shared if index < 4 else trial
        headers = {"session-id": f"codex-{index}"} if index % 2 else {"x-oneshot-session": f"harness-{index}"}
        for n in range(per_thread):
            marker = f"t{index}-r{n}"
            body = {"model": "m", "input": [], "metadata": {"marker": marker}}
            statuses.append(_post(f"{proxy.url}/s/k/v1/responses", body, headers)[0])
            # explicit header > the proxy's own session > the client's session-id
            expected[marker] = headers.get("x-oneshot-session") or (
                "trial-b" if proxy is trial else headers["session-id"]
            )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8 * per_thread
    rows = _wait_rows(db, 8 * per_thread)
    got = {row.request["metadata"]["marker"]: row.session_id for row in rows}
    assert len(rows) == len(got) == len(expected) == 8 * per_thread
    assert got == expected
    assert {row.meta["client_session_id"] for row in rows if row.session_id == "trial-b"} == {"codex-5", "codex-7"}


def test_proxy_killed_mid_stream_leaves_a_sound_db(
    start: Callable[..., ProxyHandle], raw_sse: RawSse, tmp_path: Path
) -> None:
    db = tmp_path / "raw.sqlite3"
    proxy = start(raw_sse.url, db, session_id="killed")
    for _ in range(5):
        assert _post(f"{proxy.url}/quick", {})[0] == 200
    before = _wait_rows(db, 5)
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/hold", body=b"{}")
    assert conn.getresponse().readline().startswith(b"event:")  # mid-stream now

    os.kill(proxy.pid, signal.SIGKILL)
    proxy.stop()
    conn.close()

    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    assert [(r.id, r.response) for r in _rows(db)] == [(r.id, r.response) for r in before]
    # The same file keeps working for the next proxy and the cleaner.
    again = start(raw_sse.url, db, session_id="after")
    raw_sse.release.set()
    assert _post(f"{again.url}/quick", {})[0] == 200
    assert len(_wait_rows(db, 6)) == 6
    assert cleaner.clean(db, tmp_path / "clean.sqlite3").new_rows == 6


def test_non_loopback_servers_refused_unless_allowed(start: Callable[..., ProxyHandle], tmp_path: Path) -> None:
    with pytest.raises(ProxyError, match="not loopback; pass --allow-remote"):
        start("http://10.1.2.3:80", tmp_path / "raw.sqlite3")
    forward = start(None, tmp_path / "raw.sqlite3", session_id="fwd")
    assert forward.ca_cert.is_file()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": forward.url}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open("http://0.0.0.0:9/v1/responses", timeout=10)  # 0.0.0.0 is not loopback: never dialled
    assert b"is not loopback" in refused.value.read()
    (row,) = _wait_rows(tmp_path / "raw.sqlite3", 1)
    assert row.session_id == "fwd" and "not loopback" in row.meta["error"]


def test_port_in_use_is_a_one_line_error(start: Callable[..., ProxyHandle], tmp_path: Path) -> None:
    first = start(None, tmp_path / "raw.sqlite3")
    with pytest.raises(ProxyError, match=f"port {first.port} on 127.0.0.1 is already in use"):
        start(None, tmp_path / "raw.sqlite3", port=first.port)


def test_missing_mitmdump_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONESHOT_MITMDUMP", str(tmp_path / "nope"))
    with pytest.raises(ProxyError, match="oneshot proxy install"):
        start_proxy("http://127.0.0.1:1", tmp_path / "raw.sqlite3")


def _codex_like_session(proxy: ProxyHandle, key: str, session: str, turns: int) -> None:
    """Requests shaped like codex's: full history re-sent, one more tool output each turn."""
    history: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sys"}]}
    ]
    for _ in range(turns):
        status, body = _post(
            f"{proxy.url}/s/{key}/v1/responses",
            {"model": "gpt-test", "stream": True, "input": history},
            {"session-id": session},
        )
        assert status == 200
        for event in sse.parse_events(body.decode()):
            if event.data.get("type") == "response.output_item.done":
                item = event.data["item"]
                history.append(item)
                if item["type"] in ("function_call", "custom_tool_call"):
                    history.append({"type": f"{item['type']}_output", "call_id": item["call_id"], "output": "ok"})


SCRIPT = [
    Turn(
        output=[mcp_call("mcp__oneshot", "repo_start_task_v1", {"title": "t"})],
        usage={"input_tokens": 100, "output_tokens": 10},
    ),
    Turn(
        output=[apply_patch("*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n")],
        usage={"input_tokens": 200, "output_tokens": 20},
    ),
    Turn(output=[exec_command("pytest -q")], usage={"input_tokens": 300, "output_tokens": 30}),
    Turn(output=[message("All done.")], usage={"input_tokens": 400, "output_tokens": 5}),
]


def test_cleaner_structures_output_incrementally_and_idempotently(
    start: Callable[..., ProxyHandle], scripted: ScriptedResponsesServer, tmp_path: Path
) -> None:
    db, clean_db = tmp_path / "raw.sqlite3", tmp_path / "clean.sqlite3"
    scripted.add_script("k", SCRIPT)
    proxy = start(scripted.root_url, db)
    _codex_like_session(proxy, "k", "codex-a", 2)
    _wait_rows(db, 2)
    assert cleaner.clean(db, clean_db).new_rows == 2

    _codex_like_session(proxy, "k", "codex-b", 4)
    _wait_rows(db, 6)
    result = cleaner.clean(db, clean_db)
    assert (result.new_rows, result.sessions) == (4, ("codex-b",))  # only rows it had not seen
    snapshot = sqlite3.connect(clean_db).execute("SELECT * FROM cleaned_sessions ORDER BY session_id").fetchall()
    assert cleaner.clean(db, clean_db).new_rows == 0
    assert (
        sqlite3.connect(clean_db).execute("SELECT * FROM cleaned_sessions ORDER BY session_id").fetchall() == snapshot
    )

    session = cleaner.cleaned_session(clean_db, "codex-b")
    assert session is not None and session == cleaner.export_session(db, "codex-b")
    outputs = [trace["output"] for trace in session["traces"]]
    assert [o["tool_calls"][0]["type"] if o["tool_calls"] else "message" for o in outputs] == [
        "function_call",
        "custom_tool_call",
        "function_call",
        "message",
    ]
    assert outputs[0]["tool_calls"][0]["namespace"] == "mcp__oneshot"
    assert outputs[0]["tool_calls"][0]["arguments_json"] == {"title": "t"}
    assert outputs[1]["tool_calls"][0]["input"].startswith("*** Begin Patch")
    assert outputs[3]["messages"] == [{"role": "assistant", "text": "All done."}]
    assert session["usage"]["input_tokens"] == 1000 and session["models"] == ["gpt-test"]
    assert [len(t["request"]["input"]) for t in session["traces"]] == [1, 3, 5, 7]  # in request order


def test_cleaner_while_proxy_writes_matches_a_fresh_clean(
    start: Callable[..., ProxyHandle], scripted: ScriptedResponsesServer, tmp_path: Path
) -> None:
    db = tmp_path / "raw.sqlite3"
    scripted.add_script("k", SCRIPT)
    proxy = start(scripted.root_url, db)
    writers = [threading.Thread(target=_codex_like_session, args=(proxy, "k", f"c{i}", 4)) for i in range(4)]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers) or not db.exists():
        if db.exists():
            cleaner.clean(db, tmp_path / "live.sqlite3")
        time.sleep(0.01)
    _wait_rows(db, 16)
    cleaner.clean(db, tmp_path / "live.sqlite3")
    cleaner.clean(db, tmp_path / "fresh.sqlite3")
    live = {s["session_id"]: s for s in cleaner.list_sessions(tmp_path / "live.sqlite3")}
    assert live == {s["session_id"]: s for s in cleaner.list_sessions(tmp_path / "fresh.sqlite3")}
    assert sorted(live) == ["c0", "c1", "c2", "c3"] and all(s["n_requests"] == 4 for s in live.values())


def test_export_replays_as_a_cassette(
    start: Callable[..., ProxyHandle], scripted: ScriptedResponsesServer, tmp_path: Path
) -> None:
    db = tmp_path / "raw.sqlite3"
    scripted.add_script("rec", SCRIPT)
    proxy = start(scripted.root_url, db)
    _codex_like_session(proxy, "rec", "original", 4)
    _wait_rows(db, 4)
    cassette = Cassette.model_validate(cleaner.to_cassette(cleaner.export_session(db, "original")))
    scripted.add_script("replay", cassette)
    _codex_like_session(proxy, "replay", "replayed", 4)
    _wait_rows(db, 8)

    def items(session_id: str) -> list[Any]:
        return [t["output"]["items"] for t in cleaner.export_session(db, session_id)["traces"]]

    assert items("replayed") == items("original") and len(items("original")) == 4
    assert [t.usage for t in cassette.turns] == [t.usage for t in SCRIPT]


def test_no_canary_byte_is_ever_written(start: Callable[..., ProxyHandle], raw_sse: RawSse, tmp_path: Path) -> None:
    db = tmp_path / "raw.sqlite3"
    proxy = start(raw_sse.url, db, session_id="canary")
    headers = {
        "Authorization": f"Bearer {CANARY}",
        "x-api-key": CANARY,
        "Cookie": f"s={CANARY}",
        "x-custom": CANARIES[1],
    }
    body = {
        "model": "m",
        "api_key": CANARY,
        "input": [{"type": "message", "content": f"line\n{CANARY}\n{CANARIES[2]}"}],
        "nested": json.dumps({"token": f"\n{CANARY}"}),
    }
    status, answer = _post(f"{proxy.url}/canary?api_key={CANARY}", body, headers)
    assert status == 200 and CANARY.encode() in answer  # the agent still gets the real bytes
    (row,) = _wait_rows(db, 1)
    assert "[REDACTED]" in row.response["_raw"] and row.meta["request_headers"]["authorization"] == "[REDACTED]"

    def leaks() -> list[str]:
        return [
            str(p) for p in tmp_path.rglob("*") if p.is_file() and any(c.encode() in p.read_bytes() for c in CANARIES)
        ]

    assert leaks() == []  # raw db and its live -wal/-shm, log
    cleaner.clean(db, tmp_path / "clean.sqlite3")
    session = cleaner.export_session(db, "canary")
    assert session["traces"][0]["output"]["messages"][0]["text"] == "tokens: [REDACTED] [REDACTED] [REDACTED]"
    (tmp_path / "export.json").write_text(json.dumps(session))
    (tmp_path / "cassette.json").write_text(json.dumps(cleaner.to_cassette(session)))
    proxy.stop()
    assert leaks() == []  # + cleaned db, exports, the log after shutdown


@pytest.fixture
def oneshot(
    mitmdump: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., tuple[int, str]]]:
    """Run ``oneshot proxy|traces ...`` in-process with a private state dir; stops what it started."""
    from pytest_oneshot import cli

    monkeypatch.setenv("ONESHOT_MITMDUMP", str(mitmdump))
    monkeypatch.setenv("ONESHOT_STATE_DIR", str(tmp_path / "state"))

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    yield run
    for pid_file in (tmp_path / "state" / "proxy").glob("*.json"):
        run("proxy", "stop", "--name", pid_file.stem)


def test_cli_proxy_lifecycle_and_traces(
    oneshot: Callable[..., tuple[int, str]], scripted: ScriptedResponsesServer, tmp_path: Path
) -> None:
    scripted.add_script("k", SCRIPT)
    db = tmp_path / "raw.sqlite3"
    code, out = oneshot("proxy", "start", "--upstream", scripted.root_url, "--db", str(db), "--name", "rev")
    assert code == 0, out
    url = out.split("listening at ")[1].split()[0]
    assert f"base_url at {url}/v1" in out
    pid = out.split("pid ")[1].split(")")[0]
    again = (
        f"oneshot: error: proxy 'rev' is already running at {url} (pid {pid}); "
        "run `oneshot proxy stop --name rev` first\n"
    )
    assert oneshot("proxy", "start", "--upstream", scripted.root_url, "--name", "rev") == (2, again)
    code, out = oneshot("proxy", "start", "--forward", "--name", "fwd", "--db", str(db))
    ca = tmp_path / "state" / "proxy" / "confdir" / "mitmproxy-ca-cert.pem"
    assert code == 0 and f"CODEX_CA_CERTIFICATE={ca}" in out and ca.is_file()
    code, out = oneshot("proxy", "status")
    assert code == 0 and "rev: running at" in out and "fwd: running at" in out

    _codex_like_session(
        ProxyHandle.from_json(json.loads((tmp_path / "state" / "proxy" / "rev.json").read_text())), "k", "cli", 4
    )
    _wait_rows(db, 4)
    code, out = oneshot("traces", "list", "--db", str(db))
    assert code == 0 and out.splitlines()[1].split()[:2] == ["cli", "4"]
    code, out = oneshot("traces", "show", "cli", "--db", str(db))
    assert code == 0 and "mcp__oneshot.repo_start_task_v1()" in out and "'All done.'" in out
    code, out = oneshot("traces", "export", "cli", "--db", str(db), "--cassette", "-o", str(tmp_path / "c.json"))
    assert code == 0 and len(Cassette.model_validate_json((tmp_path / "c.json").read_text()).turns) == 4
    assert oneshot("traces", "show", "nope", "--db", str(db))[1].startswith("oneshot: error: ")

    pid = json.loads((tmp_path / "state" / "proxy" / "rev.json").read_text())["pid"]
    assert oneshot("proxy", "stop", "--name", "rev")[0] == 0
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    code, out = oneshot("proxy", "status", "--name", "rev")
    assert code == 1 and "rev: not running" in out


def test_forward_mode_https_with_the_printed_ca(start: Callable[..., ProxyHandle], tmp_path: Path) -> None:
    """The forward-mode recipe works: a client trusting only the proxy's CA reaches a TLS server, and is traced."""
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = RawSse()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        db = tmp_path / "raw.sqlite3"
        proxy = start(None, db, session_id="human", mitm_options={"ssl_verify_upstream_trusted_ca": str(cert)})
        trusting_proxy_ca = ssl.create_default_context(cafile=str(proxy.ca_cert))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"https": proxy.url}), urllib.request.HTTPSHandler(context=trusting_proxy_ca)
        )
        request = urllib.request.Request(
            f"https://127.0.0.1:{server.server_address[1]}/quick", b"{}", {"authorization": f"Bearer {CANARY}"}
        )
        with opener.open(request, timeout=30) as reply:
            assert b"response.completed" in reply.read()
        rows = [row for row in _wait_rows(db, 1) if row.method == "POST"]
        assert [(row.url, row.session_id) for row in rows] == [
            (f"https://127.0.0.1:{server.server_address[1]}/quick", "human")
        ]
        assert rows[0].meta["request_headers"]["authorization"] == "[REDACTED]"
    finally:
        server.shutdown()
        server.server_close()
