"""A model agent's gateway on Modal: a sidecar Sandbox per trial, so the key never enters the agent's.

The harness's gateway listens on this machine's loopback, which Modal's cloud cannot reach; handing the
agent's Sandbox the key would let the agent (root there) read it, and lose the token count and limit.
So each route runs the same limiter (:mod:`pytest_oneshot.model.sidecar`) in a Sandbox of its own:

- its image is ``Image.debian_slim`` with this python's version, the gateway's packages at the versions
  installed here, and this package's source (``add_local_python_source``); built once per process;
- the API key and the route's random token reach it as an ephemeral ``modal.Secret`` of the command
  that starts the gateway, never as an argument or in an image; a replayed cassette is written in
  through a command, and then the sidecar has no network at all (``block_network``); otherwise it may
  reach only the upstream's host (``outbound_domain_allowlist``);
- the gateway listens on a port (:data:`PORTS`), exposed as an ``encrypted_ports`` tunnel; the agent gets the
  tunnel's URL plus ``/r/<token>`` (:attr:`SidecarRoute.base_url`), and its own Sandbox may reach that
  host only (:class:`~pytest_oneshot.sandbox.modal.ModalSandbox`, ``SandboxSpec.model_url``);
- the counts (requests, refusals, tokens) are the sidecar's journal, read with ``cat`` when the trial
  settles and closes the route; then the sidecar is terminated. Its tags name its run, trial and owner,
  so :meth:`ModalSandbox.cleanup_stale` terminates it after a killed run like any other.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, final
from urllib.parse import urlsplit

from pytest_oneshot.errors import InfraError, OneshotError
from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox.modal_client import TAG, app_for, modal_client
from pytest_oneshot.usage import TokenUsage

__all__ = ["ModalRouteHost", "SidecarRoute"]

PORTS: Final = (20000, 40000)
"""The gateway's port is drawn from these per route (any is free in a Sandbox; the test double's may share
this machine's network)."""
KEY_ENV: Final = "ONESHOT_GATEWAY_KEY"  # = pytest_oneshot.model.sidecar.KEY_ENV, which this row cannot import
TOKEN_ENV: Final = "ONESHOT_GATEWAY_TOKEN"  # = pytest_oneshot.model.sidecar.TOKEN_ENV
PACKAGES: Final = ("aiohttp", "pydantic")
"""What the sidecar's modules import beyond the standard library and this package's source."""
SOURCES: Final = ("pytest_oneshot", "oneshot_shared")
_DIR: Final = "/oneshot/gateway"
_JOURNAL: Final = f"{_DIR}/route.json"
_CASSETTE: Final = f"{_DIR}/cassette.json"
_WRITE: Final = 'mkdir -p "${0%/*}" && cat > "$0"'
_LIFETIME_SEC: Final = 24 * 3600
"""Modal's longest Sandbox lifetime: the route closes it long before (or the atexit hook, or reaping)."""
_READY_SEC: Final = 120.0

_images: dict[str, Any] = {}
_images_lock = threading.Lock()


def sidecar_image(modal: Any, app: Any) -> Any:
    """The gateway's image (built once per process)."""
    with _images_lock:
        if app.app_id not in _images:
            packages = [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES]
            python = f"{sys.version_info.major}.{sys.version_info.minor}"
            image = modal.Image.debian_slim(python_version=python).pip_install(*packages)
            image = image.add_local_python_source(*SOURCES, copy=True)
            try:
                _images[app.app_id] = image.build(app)
            except modal.exception.Error as exc:
                raise OneshotError(f"modal sandbox: building the model gateway's image failed: {exc}") from None
        return _images[app.app_id]


@final
class SidecarRoute:
    """One route, served in its sidecar Sandbox; counts are read from its journal (the last read kept)."""

    def __init__(self, modal: Any, sandbox: Any, base_url: str, limit: int | None, name: str) -> None:
        self.base_url = base_url
        self.limit = limit
        self.name = name
        self.sandbox: Any = sandbox
        self._modal = modal
        self._final: dict[str, Any] | None = None

    def counts(self) -> dict[str, Any]:
        """The journal as the gateway last wrote it (after :meth:`close`: as it was then).

        Raises:
            InfraError: it cannot be read (the sidecar is gone): the trial's token count is lost.
        """
        if self._final is not None:
            return self._final
        try:
            text = _run(self._modal, self.sandbox, "cat", _JOURNAL)
            found: dict[str, Any] = json.loads(text)
        except (OneshotError, ValueError) as exc:
            raise InfraError("agent", f"the {self.name}'s token counts cannot be read: {exc}") from None
        return found

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(**self.counts()["usage"])

    @property
    def requests(self) -> int:
        return int(self.counts()["requests"])

    @property
    def refused(self) -> int:
        return int(self.counts()["refused"])

    def close(self) -> None:
        """Keep the final counts, then terminate the sidecar. Idempotent."""
        _live.discard(self)
        if self.sandbox is None:
            return
        try:
            self._final = self.counts()
        finally:
            sandbox, self.sandbox = self.sandbox, None
            with contextlib.suppress(self._modal.exception.Error):  # already ended
                sandbox.terminate()


@final
class ModalRouteHost:
    """The model gateway's :class:`~pytest_oneshot.model.gateway.RouteHost` for agents on Modal."""

    remote = True

    def __init__(self, options: Mapping[str, str], run_id: str) -> None:
        self._options = options
        self._run_id = run_id
        self._routes: set[SidecarRoute] = set()
        self._lock = threading.Lock()

    def add(
        self, session_id: str, upstream: str | None, *, limit: int | None, api_key: str | None, cassette: Path | None
    ) -> SidecarRoute:
        modal = modal_client()
        app = app_for(modal, self._options)
        name = f"model gateway of {session_id}"
        tags = {f"{TAG}.run_id": self._run_id, f"{TAG}.trial": f"{session_id}-gateway", **Owner.current().labels()}
        token, port = secrets.token_urlsafe(24), PORTS[0] + secrets.randbelow(PORTS[1] - PORTS[0])
        network: dict[str, Any] = {"block_network": True}
        if cassette is None:
            assert upstream is not None
            network = {"block_network": False, "outbound_domain_allowlist": [urlsplit(upstream).hostname or ""]}
        try:
            sandbox = modal.Sandbox.create(
                "sleep", "infinity", app=app, image=sidecar_image(modal, app), tags=tags, timeout=_LIFETIME_SEC,
                cpu=(0.125, 1.0), memory=(256, 1024), encrypted_ports=[port], **network,
            )  # fmt: skip
        except modal.exception.Error as exc:
            raise OneshotError(f"modal sandbox: creating the {name} failed: {exc}") from None
        route = SidecarRoute(modal, sandbox, "", limit, name)
        with self._lock:
            self._routes.add(route)
        _live.add(route)
        try:
            argv = ["python", "-m", "pytest_oneshot.model.sidecar", "--port", str(port), "--journal", _JOURNAL]
            if cassette is not None:
                _run(modal, sandbox, "sh", "-c", _WRITE, _CASSETTE, stdin=cassette.read_bytes())
                argv += ["--cassette", _CASSETTE]
            else:
                argv += ["--upstream", str(upstream)]
            if limit is not None:
                argv += ["--limit", str(limit)]
            secret = modal.Secret.from_dict({TOKEN_ENV: token, **({KEY_ENV: api_key} if api_key else {})})
            gateway = sandbox.exec(*argv, workdir="/root", secrets=[secret])
            _await_journal(modal, sandbox, gateway, name)
            tunnel = sandbox.tunnels()[port]
        except BaseException:
            with contextlib.suppress(InfraError):  # terminated all the same; the start's error is the news
                route.close()
            raise
        route.base_url = f"{tunnel.url}/r/{token}"
        return route

    def remove(self, route: Any) -> None:
        with self._lock:
            self._routes.discard(route)
        route.close()

    def stop(self) -> None:
        with self._lock:
            routes, self._routes = list(self._routes), set()
        for route in routes:
            route.close()


def _await_journal(modal: Any, sandbox: Any, gateway: Any, name: str) -> None:
    """Wait for the gateway's first journal (written once its route serves), or its early exit."""
    deadline = time.monotonic() + _READY_SEC
    while True:
        with contextlib.suppress(OneshotError):
            _run(modal, sandbox, "test", "-s", _JOURNAL)
            return
        if gateway.poll() is not None:
            output = (gateway.stdout.read() + gateway.stderr.read())[-2000:]
            raise OneshotError(f"the {name} exited {gateway.returncode}: {output.strip()}")
        if time.monotonic() > deadline:
            raise OneshotError(f"the {name} did not start within {_READY_SEC:g}s")
        time.sleep(0.1)


def _run(modal: Any, sandbox: Any, *argv: str, stdin: bytes | None = None) -> str:
    """A short command in the sidecar; its stdout, or OneshotError with its output."""
    if sandbox is None:
        raise OneshotError("the model gateway's Sandbox is terminated")
    try:
        process = sandbox.exec(*argv, timeout=60)
        if stdin is not None:
            process.stdin.write(stdin)
            process.stdin.write_eof()
            process.stdin.drain()
        code = process.wait()
        out, err = process.stdout.read(), process.stderr.read()
    except modal.exception.Error as exc:
        raise OneshotError(f"the model gateway's Sandbox cannot run commands: {exc}") from None
    if code != 0:
        raise OneshotError(f"{' '.join(argv[:2])} in the model gateway's Sandbox exited {code}: {err.strip()[-500:]}")
    return str(out)


_live: set[SidecarRoute] = set()
"""Sidecars of this process not yet terminated: terminated at exit; SIGKILL is left to cleanup_stale."""


@atexit.register
def _stop_live() -> None:
    for route in list(_live):
        with contextlib.suppress(InfraError):  # terminated all the same
            route.close()
