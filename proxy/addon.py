"""mitmproxy addon: record every HTTP transaction into the raw trace store, streaming bodies through.

Run as ``mitmdump -s proxy/addon.py --set oneshot_db=PATH [--set oneshot_session=RUN]``. mitmproxy
lives in its own venv (it pins h11 against the mcp SDK), so this file imports only the stdlib,
mitmproxy, and stdlib-only modules of ours loaded by path (its siblings and ``oneshot_shared``'s).

Why the shape: responses are never buffered (a recording stream callable passes each chunk on at
once, so SSE reaches the agent in real time); a row is written exactly once per flow, on
``response`` or on ``error`` (codex hangs up right after ``response.completed``, so ``error`` is
common), or at shutdown for flows still open; every value is redacted before it is written.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import ipaddress
import itertools
import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net import encoding
from mitmproxy.proxy import server_hooks

HEALTH_PATH = "/__oneshot/health"
CLIENT_SESSION_HEADERS = ("session-id", "thread-id")

logger = logging.getLogger("oneshot.tracer")


def _load(path: Path) -> ModuleType:
    """Import a stdlib-only module of ours by path: the project is not installed in mitmdump's venv."""
    module_name = f"_oneshot_{path.parent.name}_{path.stem}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


_HERE = Path(__file__).resolve().parent
_SHARED = _HERE.parent / "oneshot_shared"  # installed next to proxy/, in a wheel as in a checkout
redact = _load(_HERE / "redact.py")
tracestore = _load(_HERE / "tracestore.py")
sse = _load(_SHARED / "sse.py")
SESSION_HEADER: str = _load(_SHARED / "wire.py").SESSION_HEADER


class _StreamRecorder:
    """``flow.response.stream`` callable: keeps each chunk and its arrival time, returns it unchanged."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.times: list[float] = []

    def __call__(self, data: bytes) -> bytes:
        if data:
            self.chunks.append(data)
            self.times.append(time.time())
        return data


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _headers(headers: http.Headers) -> dict[str, str]:
    joined = {name.lower(): ", ".join(headers.get_all(name)) for name in headers}
    redacted: dict[str, str] = redact.redact_headers(joined)  # a module loaded by path: typed as Any
    return redacted


def _body(raw: bytes | None, content_encoding: str | None) -> Any:
    """A body as OneShot stored it: the JSON value if it parses, else ``{"_raw": text}``."""
    if not raw:
        return None
    if content_encoding and content_encoding.lower() != "identity":
        with contextlib.suppress(ValueError):  # an unknown encoding is stored as it came
            raw = encoding.decode(raw, content_encoding)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"_raw": raw.decode("utf-8", errors="replace"), "_binary": True}
    try:
        return json.loads(text)
    except ValueError:
        return {"_raw": text}


def _ms(later: float | None, start: float) -> float | None:
    return None if later is None else round((later - start) * 1000, 3)


def resolve_session(headers: http.Headers, port_session: str) -> tuple[str, str]:
    """(session id, where it came from) for one request.

    Explicit beats implicit: a harness-injected ``x-oneshot-session`` header, then the session
    this proxy was started for, then the client's own ``session-id``/``thread-id`` (kept in
    ``meta.client_session_id`` either way).
    """
    if value := headers.get(SESSION_HEADER):
        return value, f"header:{SESSION_HEADER}"
    if port_session:
        return port_session, "proxy"
    for name in CLIENT_SESSION_HEADERS:
        if value := headers.get(name):
            return value, f"header:{name}"
    return "session_unknown", "none"


class _Captured(NamedTuple):
    """What a row needs from a finished flow, taken on the event loop (cheap: references, no parsing).

    A NamedTuple, not a dataclass: mitmproxy executes scripts outside ``sys.modules``.
    """

    id: str
    error: str | None
    proxy_session: str
    method: str
    url: str
    http_version: str
    request_headers: http.Headers
    request_body: bytes | None
    request_start: float
    request_end: float | None
    status: int | None = None
    response_headers: http.Headers | None = None
    response_body: bytes | None = None
    response_start: float | None = None
    response_end: float | None = None
    chunk_times: tuple[float, ...] = ()
    chunk_sizes: tuple[int, ...] = ()

    @classmethod
    def of(cls, flow: http.HTTPFlow, error: str | None) -> _Captured:
        request, response = flow.request, flow.response
        captured = cls(
            id=flow.id,
            error=error,
            proxy_session=ctx.options.oneshot_session,
            method=request.method,
            url=request.pretty_url,
            http_version=request.http_version,
            request_headers=request.headers.copy(),
            request_body=request.raw_content,
            request_start=request.timestamp_start,
            request_end=request.timestamp_end,
        )
        if response is None:
            return captured
        recorder = response.stream if isinstance(response.stream, _StreamRecorder) else None
        return captured._replace(
            status=response.status_code,
            response_headers=response.headers.copy(),
            response_body=b"".join(recorder.chunks) if recorder else response.raw_content,
            response_start=response.timestamp_start,
            response_end=response.timestamp_end or time.time(),
            chunk_times=tuple(recorder.times) if recorder else (),
            chunk_sizes=tuple(len(c) for c in recorder.chunks) if recorder else (),
        )


class _Writer:
    """Builds, redacts and inserts rows on its own thread, so neither the event loop nor the
    client's last byte ever waits for disk or for regexes over a large request body."""

    def __init__(self, db: str) -> None:
        self._queue: queue.SimpleQueue[_Captured | None] = queue.SimpleQueue()
        self.recorded = 0
        tracestore.connect(db).close()  # fail at startup, not on the first flow
        self._thread = threading.Thread(target=self._run, args=(db,), name="oneshot-writer", daemon=True)
        self._thread.start()

    def put(self, captured: _Captured) -> None:
        self._queue.put(captured)

    def close(self) -> None:
        """Write everything queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self, db: str) -> None:
        conn = tracestore.connect(db)
        try:
            while (captured := self._queue.get()) is not None:
                try:
                    self.recorded += tracestore.insert(conn, **_row(captured))
                except Exception:  # a broken record must never break the agent's traffic; it is logged loudly
                    logger.exception("oneshot: could not record flow %s", captured.id)
        finally:
            conn.close()


class Tracer:
    """Records flows into ``oneshot_db``; answers ``GET /__oneshot/health`` itself."""

    def __init__(self) -> None:
        self._writer: _Writer | None = None
        self._open: dict[str, http.HTTPFlow] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option("oneshot_db", str, "", "SQLite raw trace store to append to")
        loader.add_option("oneshot_session", str, "", "Session id for requests that carry no x-oneshot-session header")
        loader.add_option("oneshot_ready_file", str, "", "Write {pid, port, ...} here once listening")
        loader.add_option("oneshot_allow_remote", bool, False, "Allow connections to non-loopback servers")

    def configure(self, updated: set[str]) -> None:
        if "oneshot_db" in updated and ctx.options.oneshot_db:
            if self._writer is not None:
                self._writer.close()
            self._writer = _Writer(ctx.options.oneshot_db)

    def running(self) -> None:
        if self._writer is None:
            logger.error("oneshot: no trace database configured (--set oneshot_db=PATH); nothing will be recorded")
        if path := ctx.options.oneshot_ready_file:
            addrs = ctx.master.addons.get("proxyserver").listen_addrs()
            info = {"pid": os.getpid(), "port": addrs[0][1] if addrs else None, "listen": [list(a[:2]) for a in addrs]}
            tmp = f"{path}.tmp"
            Path(tmp).write_text(json.dumps(info))
            os.replace(tmp, path)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address and not ctx.options.oneshot_allow_remote and not _is_loopback(address[0]):
            data.server.error = f"oneshot proxy: {address[0]} is not loopback; start the proxy with --allow-remote"

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._open[flow.id] = flow

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path.split("?", 1)[0] == HEALTH_PATH:
            self._open.pop(flow.id, None)
            body = {
                "status": "ok",
                "service": "oneshot-tracer",
                "pid": os.getpid(),
                "session": ctx.options.oneshot_session,
                "recorded": self._writer.recorded if self._writer else 0,
            }
            flow.response = http.Response.make(200, json.dumps(body), {"content-type": "application/json"})

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.id in self._open and flow.response is not None:
            flow.response.stream = _StreamRecorder()

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow, flow.error.msg if flow.error else "unknown error")

    def done(self) -> None:
        for flow in list(self._open.values()):
            self._record(flow, "proxy stopped before the flow completed")
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _record(self, flow: http.HTTPFlow, error: str | None) -> None:
        if self._open.pop(flow.id, None) is not None and self._writer is not None:  # else: recorded, or a health probe
            self._writer.put(_Captured.of(flow, error))


def _row(captured: _Captured) -> dict[str, Any]:
    """The redacted ``traces`` row of one flow."""
    start = captured.request_start
    session_id, source = resolve_session(captured.request_headers, captured.proxy_session)
    client_session = next(
        (captured.request_headers[n] for n in CLIENT_SESSION_HEADERS if n in captured.request_headers), None
    )
    timings: dict[str, float | None] = {"request_end_ms": _ms(captured.request_end, start)}
    response_headers = captured.response_headers
    meta: dict[str, Any] = {
        "session_id": session_id,
        "session_source": source,
        "client_session_id": client_session,
        "proxy_session": captured.proxy_session or None,
        "status_code": captured.status,
        "headers": _headers(response_headers) if response_headers is not None else {},
        "request_headers": _headers(captured.request_headers),
        "http_version": captured.http_version,
        "error": captured.error,
        "complete": captured.error is None,
        "timings": timings,
    }
    response_body = None
    if response_headers is not None:
        response_body = _body(captured.response_body, response_headers.get("content-encoding"))
        timings["response_headers_ms"] = _ms(captured.response_start, start)
        timings["response_end_ms"] = _ms(captured.response_end, start)
        if captured.chunk_times:
            timings["first_byte_ms"] = _ms(captured.chunk_times[0], start)
            meta["chunks"] = [
                [_ms(t, start), size] for t, size in zip(captured.chunk_times, captured.chunk_sizes, strict=False)
            ]
            streamed_sse = "event-stream" in response_headers.get("content-type", "")
            if streamed_sse and "content-encoding" not in response_headers and captured.response_body:
                meta["sse_event_ms"] = _event_times(captured, start)
    return {
        "id": captured.id,
        "ts_ms": int(start * 1000),
        "method": captured.method,
        "url": redact.redact_text(captured.url),
        "request": redact.redact(_body(captured.request_body, captured.request_headers.get("content-encoding"))),
        "response": redact.redact(response_body),
        "meta": redact.redact(meta),
    }


def _event_times(captured: _Captured, start: float) -> list[float | None]:
    """Arrival time of each SSE event: the time of the chunk that completed it."""
    ends = list(itertools.accumulate(captured.chunk_sizes))
    return [
        _ms(captured.chunk_times[bisect.bisect_left(ends, offset)], start)
        for offset in sse.event_end_offsets(captured.response_body or b"")
    ]


addons = [Tracer()]
