"""mitmproxy addon: record every HTTP transaction into the raw trace store, streaming bodies through.

Run as ``mitmdump -s proxy/addon.py --set oneshot_db=PATH [--set oneshot_session=RUN]``. mitmproxy
lives in its own venv (it pins h11 against the mcp SDK), so this file imports only the stdlib,
mitmproxy and its stdlib-only siblings, loaded by path.

Why the shape: responses are never buffered (a recording stream callable passes each chunk on at
once, so SSE reaches the agent in real time); a row is written exactly once per flow, on
``response`` or on ``error`` (codex hangs up right after ``response.completed``, so ``error`` is
common), or at shutdown for flows still open; every value is redacted before it is written.
"""

from __future__ import annotations

import bisect
import importlib.util
import ipaddress
import json
import logging
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net import encoding
from mitmproxy.proxy import server_hooks

HEALTH_PATH = "/__oneshot/health"
SESSION_HEADER = "x-oneshot-session"
CLIENT_SESSION_HEADERS = ("session-id", "thread-id")

logger = logging.getLogger("oneshot.tracer")


def _sibling(name: str) -> ModuleType:
    """Import ``proxy/<name>.py`` by path: the project is not installed in mitmdump's venv."""
    module_name = f"_oneshot_proxy_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


redact = _sibling("redact")
sse = _sibling("sse")
tracestore = _sibling("tracestore")


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
    return redact.redact_headers({name.lower(): ", ".join(headers.get_all(name)) for name in headers.keys()})


def _body(raw: bytes | None, content_encoding: str | None) -> Any:
    """A body as OneShot stored it: the JSON value if it parses, else ``{"_raw": text}``."""
    if not raw:
        return None
    if content_encoding and content_encoding.lower() != "identity":
        try:
            raw = encoding.decode(raw, content_encoding)
        except ValueError:
            pass
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


class Tracer:
    """Records flows into ``oneshot_db``; answers ``GET /__oneshot/health`` itself."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._open: dict[str, http.HTTPFlow] = {}
        self._recorded = 0

    def load(self, loader: Loader) -> None:
        loader.add_option("oneshot_db", str, "", "SQLite raw trace store to append to")
        loader.add_option("oneshot_session", str, "", "Session id for requests that carry no x-oneshot-session header")
        loader.add_option("oneshot_ready_file", str, "", "Write {pid, port, ...} here once listening")
        loader.add_option("oneshot_allow_remote", bool, False, "Allow connections to non-loopback servers")

    def configure(self, updated: set[str]) -> None:
        if "oneshot_db" in updated and ctx.options.oneshot_db:
            if self._conn is not None:
                self._conn.close()
            self._conn = tracestore.connect(ctx.options.oneshot_db)

    def running(self) -> None:
        if not ctx.options.oneshot_db:
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
            body = {"status": "ok", "service": "oneshot-tracer", "pid": os.getpid(),
                    "session": ctx.options.oneshot_session, "recorded": self._recorded}
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
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _record(self, flow: http.HTTPFlow, error: str | None) -> None:
        if self._open.pop(flow.id, None) is None or self._conn is None:
            return  # already recorded, or a health probe
        try:
            row = self._row(flow, error)
            if tracestore.insert(self._conn, **row):
                self._recorded += 1
        except Exception:  # a broken record must never break the agent's traffic; it is logged loudly
            logger.exception("oneshot: could not record flow %s", flow.id)

    def _row(self, flow: http.HTTPFlow, error: str | None) -> dict[str, Any]:
        request, response = flow.request, flow.response
        start = request.timestamp_start
        session_id, source = resolve_session(request.headers, ctx.options.oneshot_session)
        client_session = next((request.headers[n] for n in CLIENT_SESSION_HEADERS if n in request.headers), None)
        timings: dict[str, float | None] = {"request_end_ms": _ms(request.timestamp_end, start)}
        meta: dict[str, Any] = {
            "session_id": session_id,
            "session_source": source,
            "client_session_id": client_session,
            "proxy_session": ctx.options.oneshot_session or None,
            "status_code": response.status_code if response else None,
            "headers": _headers(response.headers) if response else {},
            "request_headers": _headers(request.headers),
            "http_version": request.http_version,
            "error": error,
            "complete": error is None,
            "timings": timings,
        }
        response_body = None
        if response is not None:
            recorder = response.stream if isinstance(response.stream, _StreamRecorder) else None
            raw = b"".join(recorder.chunks) if recorder else response.raw_content
            response_body = _body(raw, response.headers.get("content-encoding"))
            timings["response_headers_ms"] = _ms(response.timestamp_start, start)
            timings["response_end_ms"] = _ms(response.timestamp_end or time.time(), start)
            if recorder and recorder.chunks:
                timings["first_byte_ms"] = _ms(recorder.times[0], start)
                meta["chunks"] = [[_ms(t, start), len(c)] for t, c in zip(recorder.times, recorder.chunks)]
                streamed_sse = "event-stream" in response.headers.get("content-type", "")
                if streamed_sse and "content-encoding" not in response.headers:
                    meta["sse_event_ms"] = _event_times(recorder, start)
        return {
            "id": flow.id,
            "ts_ms": int(start * 1000),
            "method": request.method,
            "url": redact.redact_text(request.pretty_url),
            "request": redact.redact(_body(request.raw_content, request.headers.get("content-encoding"))),
            "response": redact.redact(response_body),
            "meta": redact.redact(meta),
        }


def _event_times(recorder: _StreamRecorder, start: float) -> list[float | None]:
    """Arrival time of each SSE event: the time of the chunk that completed it."""
    ends, total = [], 0
    for chunk in recorder.chunks:
        total += len(chunk)
        ends.append(total)
    return [
        _ms(recorder.times[bisect.bisect_left(ends, offset)], start)
        for offset in sse.event_end_offsets(b"".join(recorder.chunks))
    ]


addons = [Tracer()]
