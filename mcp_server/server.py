"""The capture MCP server (``python -m mcp_server``, ``oneshot mcp``): four tools over stdio, on the ``mcp`` SDK.

Tool names, arguments and answers are the original's (``repo_start_task_v1 {task_title, notes?,
labels?}`` ...), answers as JSON text. A refusal is an MCP error (``isError``), never a success
saying ``ok: false``. The repository is ``$ONESHOT_REPO`` when set (codex starts servers with a fixed
environment plus the config's ``env`` table), else the server's working directory. Git and the test
runs are blocking work, so each call runs in a worker thread and the server keeps answering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server import capture
from mcp_server.gitrepo import CaptureError

INSTRUCTIONS = (
    "Capture this pair-programming session as an evaluation task. Call repo_start_task_v1 before changing "
    "anything, make the change together with a test that fails without it, then call repo_end_task_v1 "
    "with a summary. repo_check_readiness_v1 / repo_autofix_readiness_v1 report and fix what blocks a start."
)


def repo_dir() -> Path:
    return Path(os.environ.get("ONESHOT_REPO") or os.getcwd())


async def _call(work: Callable[[], dict[str, Any]]) -> str:
    try:
        result = await anyio.to_thread.run_sync(work)
    except CaptureError as exc:
        raise ToolError(str(exc)) from None
    return json.dumps(result, indent=2)


def build_server() -> MCPServer:
    server: MCPServer = MCPServer("oneshot", instructions=INSTRUCTIONS, version="1")

    @server.tool(name="repo_check_readiness_v1", structured_output=False)
    async def check_readiness() -> str:
        """Report what would block capturing a task here (merge/rebase in progress, conflicts, submodules, identity)."""
        return await _call(lambda: capture.check_readiness(repo_dir()))

    @server.tool(name="repo_autofix_readiness_v1", structured_output=False)
    async def autofix_readiness() -> str:
        """Fix what is safe to fix (git identity placeholder, submodules) and report what remains."""
        return await _call(lambda: capture.autofix_readiness(repo_dir()))

    @server.tool(name="repo_start_task_v1", structured_output=False)
    async def start_task(task_title: str, notes: str = "", labels: list[str] | None = None) -> str:
        """Start capturing a task: snapshot the repository as it is now (nothing is committed on your branch).

        Args:
            task_title: a short title of the change about to be made
            notes: what the task asks for, in the user's words (becomes the task's instructions)
            labels: tags for the task
        """
        return await _call(lambda: capture.start_task(repo_dir(), task_title, notes, labels))

    @server.tool(name="repo_end_task_v1", structured_output=False)
    async def end_task(summary: str, labels: list[str] | None = None, sensitivity: str | None = None) -> str:
        """Finish the task: snapshot the end state, validate the session's tests, write the task directory.

        Args:
            summary: what was changed and why
            labels: more tags for the task
            sensitivity: safe, sensitive or unknown, overriding the automatic decision
        """
        return await _call(lambda: capture.end_task(repo_dir(), summary, labels, sensitivity))

    return server


def main() -> None:
    build_server().run("stdio")
