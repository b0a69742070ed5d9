"""Loopback forwarder between an agent and its model endpoint: counts tokens, enforces the limit.

Codex has no hard token cap, so the cap is enforced outside it: every response streams
through this forwarder unbuffered, the ``usage`` of each ``response.completed`` event is
added to the route's total, and once the total reaches the route's limit the next request
is answered with the API's own HTTP 429 ``insufficient_quota`` (codex then stops, keeping
its edits). The forwarder also injects the API key, so the key never enters the sandbox.

Each agent run gets a route, ``http://127.0.0.1:PORT/r/<token>``, that maps onto one
upstream base URL: ``POST /r/<token>/responses`` goes to ``{upstream}/responses``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from proxy.sse import event_end_offsets, parse_events
from pytest_oneshot.agent import TokenUsage

__all__ = ["LIMITER_ERROR_PREFIX", "Route", "TokenLimiter", "usage_from_api"]

LIMITER_ERROR_PREFIX = "oneshot token limit reached"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    }
)
# SSE must arrive uncompressed to be read; the tracing proxy's session header is ours, not the API's.
_DROPPED_REQUEST_HEADERS = _HOP_BY_HOP | {"accept-encoding", "authorization", "x-oneshot-session"}


def usage_from_api(usage: Mapping[str, Any]) -> TokenUsage:
    """A Responses-API ``usage`` object as :class:`TokenUsage` (missing fields count as 0)."""
    return TokenUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        cached_input_tokens=int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        reasoning_output_tokens=int((usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0),
    )


def _add(total: TokenUsage, more: TokenUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=total.input_tokens + more.input_tokens,
        cached_input_tokens=total.cached_input_tokens + more.cached_input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        reasoning_output_tokens=total.reasoning_output_tokens + more.reasoning_output_tokens,
    )


@dataclass
class Route:
    """One agent run's path to its model: budget, key and what it has spent so far."""

    upstream: str
    limit: int | None
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    usage: TokenUsage = field(default_factory=TokenUsage)
    requests: int = 0
    """Requests received on this route, refused ones included."""
    refused: int = 0
    """Requests answered with 429 because the budget was spent."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.usage.total_tokens >= self.limit

    def charge(self, usage: TokenUsage) -> None:
        with self._lock:
            self.usage = _add(self.usage, usage)

    def receive(self) -> None:
        with self._lock:
            self.requests += 1

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1


class TokenLimiter:
    """A threaded loopback forwarder holding any number of routes; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.limiter = self
        self._host = host
        self._routes: dict[str, Route] = {}
        self._upstreams: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add_route(self, upstream: str, *, limit: int | None = None, api_key: str | None = None) -> Route:
        """A new route to ``upstream`` (a base URL such as ``https://api.openai.com/v1``).

        Args:
            limit: total tokens (input + output) after which requests are refused.
            api_key: sent upstream as ``Authorization: Bearer``; whatever the client sent is dropped.
        """
        if urlsplit(upstream).scheme not in ("http", "https"):
            raise ValueError(f"upstream must be an http(s) URL (got {upstream!r})")
        token = secrets.token_hex(8)
        route = Route(upstream.rstrip("/"), limit, f"http://{self._host}:{self._httpd.server_port}/r/{token}", api_key)
        with self._lock:
            self._routes[token] = route
        return route

    def route(self, token: str) -> Route | None:
        with self._lock:
            return self._routes.get(token)

    def remove_route(self, route: Route) -> None:
        """Forget ``route``: later requests on it get 404 (a finished trial's leftovers reach nothing)."""
        with self._lock:
            self._routes = {token: kept for token, kept in self._routes.items() if kept is not route}

    def start(self) -> TokenLimiter:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="token-limiter", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every upstream stream still open. Idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._lock:
            for connection in self._upstreams:
                if connection.sock is not None:
                    with contextlib.suppress(OSError):
                        connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading
        self._httpd.server_close()

    def __enter__(self) -> TokenLimiter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, connection: http.client.HTTPConnection, open_: bool) -> None:
        with self._lock:
            (self._upstreams.add if open_ else self._upstreams.discard)(connection)


class _UsageScanner:
    """Finds ``response.completed`` usage in an SSE byte stream fed in arbitrary pieces."""

    def __init__(self, route: Route) -> None:
        self._route = route
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        offsets = event_end_offsets(self._pending)
        if not offsets:
            return
        complete, self._pending = self._pending[: offsets[-1]], self._pending[offsets[-1] :]
        for event in parse_events(complete.decode("utf-8", "replace")):
            if isinstance(event.data, dict) and event.data.get("type") == "response.completed":
                self._route.charge(usage_from_api((event.data.get("response") or {}).get("usage") or {}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    limiter: TokenLimiter


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def limiter(self) -> TokenLimiter:
        return cast(_Server, self.server).limiter

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: usage totals are the record."""

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.split("/", 3)  # "", "r", token, rest
        route = self.limiter.route(parts[2]) if len(parts) >= 3 and parts[1] == "r" else None
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, "not_found", f"no route for {self.path}")
            return
        route.receive()
        if route.exhausted:
            route.refuse()
            text = f"{LIMITER_ERROR_PREFIX}: {route.usage.total_tokens} tokens used of {route.limit}"
            self._json(HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", text, kind="insufficient_quota")
            return
        target = urlsplit(f"{route.upstream}/{parts[3] if len(parts) == 4 else ''}")
        connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        upstream = connection_class(target.netloc)
        self.limiter._track(upstream, True)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS}
            if route.api_key:
                headers["Authorization"] = f"Bearer {route.api_key}"
            path = target.path + (f"?{target.query}" if target.query else "")
            try:
                upstream.request(self.command, path, body=body, headers=headers)
                response = upstream.getresponse()
            except OSError as exc:
                self._json(HTTPStatus.BAD_GATEWAY, "upstream_unreachable", f"model endpoint {route.upstream}: {exc}")
                return
            self._relay(response, route)
        finally:
            self.limiter._track(upstream, False)
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, route: Route) -> None:
        """Pass the response on chunk by chunk as it arrives, counting usage on the way."""
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        scanner = _UsageScanner(route)
        try:
            while chunk := response.read1(65536):
                scanner.feed(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            pass  # either side hung up (codex does right after response.completed)

    def _json(self, status: int, code: str, message: str, *, kind: str = "invalid_request_error") -> None:
        data = json.dumps({"error": {"type": kind, "code": code, "message": message, "param": None}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
