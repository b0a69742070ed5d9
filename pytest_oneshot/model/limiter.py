"""Loopback forwarder between an agent and its model endpoint: counts tokens, enforces the limit.

Codex has no hard token cap, so the cap is enforced outside it: every response streams
through this forwarder unbuffered (each chunk is written on as it arrives), the ``usage`` of
each ``response.completed`` event is added to the route's total, and once the total reaches the
route's limit the next request is answered with the API's own HTTP 429 ``insufficient_quota``
(codex then stops, keeping its edits). The forwarder also injects the API key, so the key never
enters the sandbox.

Each agent run gets a route, ``http://127.0.0.1:PORT/r/<token>``, that maps onto one
upstream base URL: ``POST /r/<token>/responses`` goes to ``{upstream}/responses``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from oneshot_shared.sse import event_end_offsets, parse_events
from oneshot_shared.wire import SESSION_HEADER
from pytest_oneshot.files import write_atomic
from pytest_oneshot.model.serving import BackgroundServer, api_error
from pytest_oneshot.usage import TokenUsage

__all__ = ["LIMITER_ERROR_PREFIX", "Route", "TokenLimiter"]

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
_DROPPED_REQUEST_HEADERS = _HOP_BY_HOP | {"accept-encoding", "authorization", SESSION_HEADER}


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
    journal: Path | None = None
    """Where every change of the counts is written (JSON, :meth:`counts`) before the agent sees its effect:
    the harness reads a remote gateway's counts from there (:mod:`pytest_oneshot.model.sidecar`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.usage.total_tokens >= self.limit

    def charge(self, usage: TokenUsage) -> None:
        with self._lock:
            self.usage = self.usage + usage
            self._save()

    def receive(self) -> None:
        with self._lock:
            self.requests += 1
            self._save()

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1
            self._save()

    def counts(self) -> dict[str, Any]:
        """What the route has seen, as JSON: ``requests``, ``refused`` and ``usage`` (the API's flat counts)."""
        return {"requests": self.requests, "refused": self.refused, "usage": dict(self.usage.__dict__)}

    def _save(self) -> None:
        if self.journal is not None:
            write_atomic(self.journal, json.dumps(self.counts()).encode())


class TokenLimiter:
    """A loopback forwarder holding any number of routes; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = BackgroundServer(self._forward, host=host, port=port, name="token-limiter", context=self._client)
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

    def add_route(
        self,
        upstream: str,
        *,
        limit: int | None = None,
        api_key: str | None = None,
        token: str | None = None,
        journal: Path | None = None,
    ) -> Route:
        """A new route to ``upstream`` (a base URL such as ``https://api.openai.com/v1``).

        Args:
            limit: total tokens (input + output) after which requests are refused.
            api_key: sent upstream as ``Authorization: Bearer``; whatever the client sent is dropped.
            token: the route's path segment (``/r/<token>``), the only thing a client needs to use it
                (default: a random one).
            journal: see :attr:`Route.journal`.
        """
        if urlsplit(upstream).scheme not in ("http", "https"):
            raise ValueError(f"upstream must be an http(s) URL (got {upstream!r})")
        token = token or secrets.token_hex(8)
        base_url = f"http://{self._server.host}:{self._server.port}/r/{token}"
        route = Route(upstream.rstrip("/"), limit, base_url, api_key, journal=journal)
        route._save()
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
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every upstream stream still open. Idempotent."""
        self._server.stop()

    def __enter__(self) -> TokenLimiter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _client(self, app: web.Application) -> AsyncIterator[None]:
        """One upstream client for the server's lifetime (pooled connections), closed at stop."""
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None)
        # No Accept-Encoding of aiohttp's own: the stream must arrive uncompressed to be counted.
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
        ) as self._session:
            yield
        self._session = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        parts = request.raw_path.split("/", 3)  # "", "r", token, rest
        route = self.route(parts[2]) if len(parts) >= 3 and parts[1] == "r" else None
        if route is None:
            return api_error(HTTPStatus.NOT_FOUND, "not_found", f"no route for {request.raw_path}")
        route.receive()
        if route.exhausted:
            route.refuse()
            text = f"{LIMITER_ERROR_PREFIX}: {route.usage.total_tokens} tokens used of {route.limit}"
            return api_error(HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", text, kind="insufficient_quota")
        headers = CIMultiDict(
            (name, value) for name, value in request.headers.items() if name.lower() not in _DROPPED_REQUEST_HEADERS
        )
        if route.api_key:
            headers["Authorization"] = f"Bearer {route.api_key}"
        body = await request.read()
        assert self._session is not None
        target = URL(f"{route.upstream}/{parts[3] if len(parts) == 4 else ''}", encoded=True)  # sent as received
        try:
            upstream = await self._session.request(request.method, target, data=body, headers=headers)
        except (aiohttp.ClientError, OSError) as exc:
            message = f"model endpoint {route.upstream}: {exc}"
            return api_error(HTTPStatus.BAD_GATEWAY, "upstream_unreachable", message)
        async with upstream:
            return await _relay(request, upstream, route)


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse, route: Route) -> web.StreamResponse:
    """Pass the response on chunk by chunk as it arrives, counting usage on the way."""
    headers = [(name, value) for name, value in upstream.headers.items() if name.lower() not in _HOP_BY_HOP]
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    scanner = _UsageScanner(route)
    try:
        async for chunk in upstream.content.iter_any():
            scanner.feed(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientError, ConnectionResetError):
        pass  # either side hung up (codex does right after response.completed)
    return response


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
                self._route.charge(TokenUsage.from_api((event.data.get("response") or {}).get("usage") or {}))
