"""Serve an aiohttp application from a daemon thread with its own event loop, started and stopped synchronously.

The harness is synchronous (pytest, a thread per trial) while the model servers are asyncio, so that
one thread holds any number of open SSE streams. The socket is bound in the constructor, so the URL
is known (and a port in use fails) before :meth:`BackgroundServer.start`. Stopping cancels handlers
still running after :data:`SHUTDOWN_GRACE_SEC`: a hanging scripted turn or an upstream stream still
open is cut, its client sees the connection close.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, final

from aiohttp import web

__all__ = ["SHUTDOWN_GRACE_SEC", "BackgroundServer", "api_error", "json_response"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SHUTDOWN_GRACE_SEC: Final = 0.1
MAX_REQUEST_BYTES: Final = 256 * 1024 * 1024
"""A model request re-sends the whole history; aiohttp's default cap (1 MiB) would refuse long sessions."""


@final
class BackgroundServer:
    """An HTTP server on ``host:port`` (0: a free port), serving while started; :meth:`stop` is idempotent."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        name: str,
        context: Callable[[web.Application], AsyncIterator[None]] | None = None,
    ) -> None:
        """Serve every method and path with ``handler``; ``context`` runs around serving (aiohttp ``cleanup_ctx``)."""
        self._app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        self._app.router.add_route("*", "/{path:.*}", handler)
        if context is not None:
            self._app.cleanup_ctx.append(context)
        self._sock = socket.create_server((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._loop = loop
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SEC)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    def stop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
        self._sock.close()


def json_response(status: int, payload: Mapping[str, Any]) -> web.Response:
    """``payload`` as ``application/json`` (no charset parameter: clients compare the type as the API sends it)."""
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


def api_error(status: int, code: str, message: str, *, kind: str = "invalid_request_error") -> web.Response:
    """An error in the Responses API's own shape, so clients report it as they would the API's."""
    return json_response(status, {"error": {"type": kind, "code": code, "message": message, "param": None}})
