"""A real headless browser for the HTML report's tests: Debian's chromium, driven over the DevTools
protocol (a websocket on loopback, through aiohttp's client).

Chromium is kept off every network: host names resolve to nothing and background services are off,
so the page can reach only what it holds (the report must need nothing else).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.polling import wait_for

_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI containers) chromium's own sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
)


def find_chromium() -> str:
    """chromium's path; skip (or fail where CI requires it: ONESHOT_REQUIRE_CHROMIUM) when missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not installed (apt-get install chromium; scripts/install-deps does)"
        if os.environ.get("ONESHOT_REQUIRE_CHROMIUM"):
            pytest.fail(f"ONESHOT_REQUIRE_CHROMIUM is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass
class PageVisit:
    """What loading a page showed: its problems (console errors, exceptions, dialogs), the values of
    the expressions asked for, and a screenshot."""

    problems: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


def visit(chromium: str, page: Path, expressions: dict[str, str], profile: Path) -> PageVisit:
    """Load ``page`` in a fresh headless chromium (its profile in ``profile``), evaluate ``expressions``
    there (in order; a promise is awaited) and take a screenshot."""
    argv = [chromium, *_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        endpoint = _endpoint(profile / "DevToolsActivePort", browser)
        return asyncio.run(asyncio.wait_for(_drive(endpoint, page, expressions), timeout=120))
    finally:
        os.killpg(browser.pid, signal.SIGKILL)  # with its zygote and renderers
        browser.wait()


def _endpoint(port_file: Path, browser: subprocess.Popen[bytes]) -> str:
    wait_for(lambda: (port_file.is_file() and len(port_file.read_text().split()) == 2) or browser.poll() is not None,
             "chromium's DevTools port")  # fmt: skip
    if browser.poll() is not None:
        pytest.fail(f"chromium exited {browser.returncode} before it listened")
    port, path = port_file.read_text().split()
    return f"ws://127.0.0.1:{port}{path}"


async def _drive(endpoint: str, page: Path, expressions: dict[str, str]) -> PageVisit:
    visit = PageVisit()
    async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as ws:
        cdp = _Cdp(ws, visit)
        target = await cdp.call("Target.createTarget", url="about:blank")
        attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        cdp.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await cdp.call(f"{domain}.enable")
        loaded = cdp.expect("Page.loadEventFired")
        await cdp.call("Page.navigate", url=page.resolve().as_uri())
        await loaded
        for name, expression in expressions.items():
            answer = await cdp.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in answer:
                visit.problems.append(f"evaluating {name}: {answer['exceptionDetails'].get('text')}")
            visit.values[name] = answer["result"].get("value")
        shot = await cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        visit.screenshot = base64.b64decode(shot["data"])
    return visit


class _Cdp:
    """Commands and events of one DevTools connection (flat sessions: one socket for all targets)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, visit: PageVisit) -> None:
        self.ws, self.visit = ws, visit
        self.session: str | None = None
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pending: set[asyncio.Future[dict[str, Any]]] = set()
        """Answers to dialogs (a dialog left open blocks the page)."""
        self._reader = asyncio.ensure_future(self._read())

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        self._events[method] = asyncio.get_running_loop().create_future()
        return self._events[method]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        answer = self._waiting[self._next] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(json.dumps(message))
        return await answer

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw.data)
            if "id" in message:
                waiting = self._waiting.pop(message["id"])
                if "error" in message:
                    waiting.set_exception(AssertionError(f"DevTools: {message['error']}"))
                else:
                    waiting.set_result(message.get("result", {}))
                continue
            method, params = message.get("method", ""), message.get("params", {})
            self._note(method, params)
            if method in self._events and not self._events[method].done():
                self._events[method].set_result(params)

    def _note(self, method: str, params: dict[str, Any]) -> None:
        problems = self.visit.problems
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            problems.append(f"console.{params['type']}: {[arg.get('value') for arg in params.get('args', [])]}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            problems.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            problems.append(f"a dialog opened: {params.get('message')!r}")
            self._pending.add(asyncio.ensure_future(self.call("Page.handleJavaScriptDialog", accept=True)))
