"""The model gateway: one per process, every trial's model traffic goes through it.

::

    agent ──▶ trace recorder ────────────▶ TokenLimiter ──────────────────▶ model API / replay server
              (--oneshot-trace only:      adds the key, counts tokens,
               mitmdump in reverse mode,  enforces limits.token_limit (HTTP 429)
               records, never sees a key)

Why this order: the key is added behind the recorder, so no trace can hold it, and the token
limit is enforced in one place whether tracing is on or off. One recorder serves every route,
because its only upstream is the limiter (routes are paths, ``/r/<token>``). Servers start on
the first route, so runs without model agents pay nothing. Each xdist worker has its own
gateway; their recorders append to the run's one SQLite database (WAL mode: writers queue on a
lock, readers never block). The recorder is ``proxy/``'s, found through the ``pytest_oneshot.recorders``
entry point (:class:`TraceRecorder`), so the harness and the proxy never import each other.

Where the limiter runs is a :class:`RouteHost`: on this machine's loopback by default; for agents in a
remote sandbox that cannot reach it (``--oneshot-sandbox=modal``), the sandbox's own host (a sidecar
Sandbox per route, :mod:`pytest_oneshot.sandbox.modal_gateway`), which also serves a replayed cassette.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, final
from urllib.parse import urlsplit

from oneshot_shared.wire import SESSION_HEADER
from pytest_oneshot.agent import AgentResult, ModelEndpoint
from pytest_oneshot.errors import OneshotError
from pytest_oneshot.files import write_atomic
from pytest_oneshot.pricing import DEFAULT_PRICES, Price, cost_usd, load_prices
from pytest_oneshot.registry import Registry
from pytest_oneshot.usage import TokenUsage

if TYPE_CHECKING:  # the limiter (aiohttp) is imported only when a route opens: sandboxes load the plugin too
    from pytest_oneshot.model.limiter import TokenLimiter
    from pytest_oneshot.settings import OneshotSettings

__all__ = [
    "DEFAULT_BASE_URL",
    "SESSION_HEADER",
    "ModelGateway",
    "ModelRoute",
    "RecorderFactory",
    "RouteHost",
    "RouteReport",
    "RouteView",
    "TraceRecorder",
]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
RECORD_WAIT_SEC: Final = 10.0
"""How long a finished route waits for the recorder to commit its last requests."""
RECORDERS_GROUP: Final = "pytest_oneshot.recorders"
TRACE_RECORDER: Final = "mitmproxy"


class TraceRecorder(Protocol):
    """Records every request a gateway forwards, filed by :data:`SESSION_HEADER` (``--oneshot-trace``)."""

    def start(self, upstream: str) -> str:
        """Start recording traffic to ``upstream`` (the limiter's root URL); return the URL to send it to.

        Raises:
            OneshotError: the recorder could not start (its log's last line).
        """

    def export(self, session_id: str, requests: int, wait_sec: float) -> tuple[dict[str, Any], bool]:
        """The session's record (``oneshot-trace/1``) once ``requests`` of its requests are recorded, or
        after ``wait_sec``; and whether they all were."""

    def stop(self) -> None:
        """Stop recording; what the recorder holds is committed first. Idempotent."""


class RecorderFactory(Protocol):
    def __call__(self, trace_db: Path, log_dir: Path) -> TraceRecorder:
        """A recorder writing to the SQLite store ``trace_db``, its logs in ``log_dir``.

        Raises:
            OneshotError: it cannot run here (with how to install what is missing).
        """


class RouteView(Protocol):
    """One route as its host counts it (:class:`~pytest_oneshot.model.limiter.Route` on loopback)."""

    @property
    def base_url(self) -> str: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def usage(self) -> TokenUsage: ...
    @property
    def requests(self) -> int: ...
    @property
    def refused(self) -> int: ...


class RouteHost(Protocol):
    """Where routes are served: each adds the key, counts tokens and refuses requests past its limit."""

    remote: bool
    """Its routes are reached from outside this machine: a replay is served by the host itself (``cassette``),
    and a loopback recorder cannot stand in front of them."""

    def add(
        self, session_id: str, upstream: str | None, *, limit: int | None, api_key: str | None, cassette: Path | None
    ) -> RouteView:
        """A new route to ``upstream``, or replaying ``cassette`` (a remote host only).

        Raises:
            OneshotError: the route cannot be served (naming why).
        """

    def remove(self, route: RouteView) -> None:
        """Stop serving ``route``; its counts stay readable."""

    def stop(self) -> None:
        """Stop every route. Idempotent."""


@final
class _LoopbackHost:
    """Routes on this machine's loopback (the limiter is started on the first)."""

    remote = False

    def __init__(self) -> None:
        self._limiter: TokenLimiter | None = None

    def add(
        self, session_id: str, upstream: str | None, *, limit: int | None, api_key: str | None, cassette: Path | None
    ) -> RouteView:
        from pytest_oneshot.model.limiter import TokenLimiter

        if cassette is not None or upstream is None:
            raise OneshotError("the loopback gateway forwards to an upstream URL (a replay server's included)")
        if self._limiter is None:
            self._limiter = TokenLimiter().start()
        return self._limiter.add_route(upstream, limit=limit, api_key=api_key)

    def remove(self, route: RouteView) -> None:
        if self._limiter is not None:
            self._limiter.remove_route(route)  # type: ignore[arg-type]  # its own Route

    def stop(self) -> None:
        if self._limiter is not None:
            self._limiter.stop()
            self._limiter = None


@dataclass(frozen=True)
class RouteReport:
    """A finished route: what the trial's agent spent, and where its trace went."""

    requests: int
    usage: TokenUsage
    cost_usd: float | None
    """None when the model has no price."""
    trace_path: Path | None = None
    trace_complete: bool | None = None
    """Whether every request was recorded in time (None without tracing)."""


@final
class ModelRoute:
    """One trial's path to its model; hand :attr:`endpoint` to the agent."""

    def __init__(
        self, gateway: ModelGateway, route: RouteView, endpoint: ModelEndpoint, session_id: str, model: str | None
    ) -> None:
        self.endpoint = endpoint
        self.session_id = session_id
        self._gateway = gateway
        self._route = route
        self._model = model

    @property
    def usage(self) -> TokenUsage:
        """Tokens the upstream reported on this route so far."""
        return self._route.usage

    @property
    def requests(self) -> int:
        """Requests received on this route, refused ones included."""
        return self._route.requests

    def settle(self, result: AgentResult) -> AgentResult:
        """``result`` as the gateway saw it: once a request was refused, the token limit stopped
        the agent, whatever the agent made of the 429."""
        if not self._route.refused:
            return result
        message = f"token limit of {self._route.limit} reached ({self._route.usage.total_tokens} tokens used)"
        return AgentResult("token_limit", message, result.exit_code, result.usage)

    def close(self, trace_to: Path | None = None) -> RouteReport:
        """Stop routing; when tracing, first write this session's trace (``export_session``) to ``trace_to``."""
        complete = self._gateway._export(self, trace_to) if trace_to is not None else None
        self._gateway._remove(self._route)
        route = self._route
        return RouteReport(
            requests=route.requests,
            usage=route.usage,
            cost_usd=cost_usd(self._gateway.prices, self._model, route.usage),
            trace_path=trace_to if complete is not None else None,
            trace_complete=complete,
        )


@final
class ModelGateway:
    """Routes for the trials of one process; a context manager (or call :meth:`close`).

    Args:
        upstream: the model API base URL routes go to by default.
        api_key: sent only to ``upstream``, never to a route's own upstream (a replay server).
        prices: the price table for :attr:`RouteReport.cost_usd`.
        recorder: records every request (``--oneshot-trace``); None: no tracing.
        host: makes the :class:`RouteHost` when the first route opens (the sandbox's own, for a remote
            sandbox); None, or it returns None: this machine's loopback.
    """

    def __init__(
        self,
        upstream: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        prices: Mapping[str, Price] = DEFAULT_PRICES,
        recorder: TraceRecorder | None = None,
        host: Callable[[], RouteHost | None] | None = None,
    ) -> None:
        if urlsplit(upstream).scheme not in ("http", "https"):
            raise OneshotError(f"model base URL must be http(s)://HOST[:PORT]/PATH (got {upstream!r})")
        self.upstream = upstream
        self.prices = prices
        self._api_key = api_key
        self._recorder = recorder
        self._recorder_url: str | None = None
        self._make_host = host
        self._host: RouteHost | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: OneshotSettings, host: Callable[[], RouteHost | None] | None = None
    ) -> ModelGateway:
        """The session's gateway (no server started yet); ``host`` as in the constructor (the sandbox's).

        Raises:
            OneshotError: a bad prices file, or ``--oneshot-trace`` without a recorder that can run
                (mitmdump missing: with how to install it).
        """
        recorder = None
        if settings.trace:
            run_root = settings.runs_dir / settings.run_id
            registry: Registry[RecorderFactory] = Registry("trace recorder", RECORDERS_GROUP)
            registry.load_entry_points()
            try:
                recorder = registry.get(TRACE_RECORDER)(run_root / "traces.sqlite3", run_root / "logs")
            except OneshotError as exc:
                raise OneshotError(f"--oneshot-trace: {exc}") from None
        return cls(
            settings.base_url or DEFAULT_BASE_URL,
            api_key=os.environ.get(settings.api_key_env) or None,
            prices=load_prices(settings.prices),
            recorder=recorder,
            host=host,
        )

    @property
    def remote(self) -> bool:
        """Whether routes are served away from this machine (then a replay is opened with ``cassette``)."""
        return self._routes().remote

    def open(
        self,
        session_id: str,
        *,
        model: str | None = None,
        limit: int | None = None,
        upstream: str | None = None,
        cassette: Path | None = None,
    ) -> ModelRoute:
        """A new route for one trial.

        Args:
            session_id: the trial's id; names its session in the trace.
            model: the model it runs, for pricing.
            limit: total tokens after which requests are refused with HTTP 429 ``insufficient_quota``.
            upstream: serve this route from another endpoint (a replay server) instead of
                :attr:`upstream`; it gets no API key.
            cassette: replay this cassette from the host itself (a :attr:`remote` host only); no API key.
        Raises:
            OneshotError: no API key for the OpenAI API, the tracing proxy could not start (its log's
                last line), or the host could not serve the route.
        """
        replay = upstream is not None or cassette is not None
        if not replay and self._api_key is None and self.upstream == DEFAULT_BASE_URL:
            raise OneshotError(
                f"no API key for {self.upstream}: set OPENAI_API_KEY (or the variable named by "
                "--oneshot-api-key-env), or replay the recorded sessions with --oneshot-model=replay"
            )
        host = self._routes()
        if host.remote and self._recorder is not None:
            raise OneshotError(
                "--oneshot-trace records on this machine's loopback, which this sandbox's model traffic never "
                "crosses (its gateway runs beside the agent); run without --oneshot-trace"
            )
        api_key = None if replay else self._api_key
        route = host.add(
            session_id, None if cassette else upstream or self.upstream, limit=limit, api_key=api_key, cassette=cassette
        )
        with self._lock:
            if self._recorder is None:
                return ModelRoute(self, route, ModelEndpoint(route.base_url), session_id, model)
            if self._recorder_url is None:
                limiter = urlsplit(route.base_url)
                self._recorder_url = self._recorder.start(f"{limiter.scheme}://{limiter.netloc}")
            url = self._recorder_url
        endpoint = ModelEndpoint(url + urlsplit(route.base_url).path, {SESSION_HEADER: session_id})
        return ModelRoute(self, route, endpoint, session_id, model)

    def _routes(self) -> RouteHost:
        with self._lock:
            if self._host is None:
                self._host = (self._make_host() if self._make_host else None) or _LoopbackHost()
            return self._host

    def _export(self, route: ModelRoute, dest: Path) -> bool | None:
        """Write ``route``'s session once the recorder has committed all its requests (or at the
        deadline); returns whether it had, None when not tracing."""
        if self._recorder is None or self._recorder_url is None:
            return None
        session, complete = self._recorder.export(route.session_id, route.requests, RECORD_WAIT_SEC)
        write_atomic(dest, json.dumps(session, indent=2, ensure_ascii=False).encode())
        return complete

    def _remove(self, route: RouteView) -> None:
        with self._lock:
            host = self._host
        if host is not None:
            host.remove(route)

    def close(self) -> None:
        """Stop the recorder (it commits what it holds), then the routes' host. Idempotent."""
        with self._lock:
            if self._recorder is not None and self._recorder_url is not None:
                self._recorder.stop()
                self._recorder_url = None
            if self._host is not None:
                self._host.stop()
                self._host = None

    def __enter__(self) -> ModelGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
