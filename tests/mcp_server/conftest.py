"""Capture fixtures: a small user repository, and a session with the real MCP server over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

CALC = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
NEW_TEST = "\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A user's repo: calc with a sign bug, one passing test, one commit, an identity."""

    def make(name: str = "repo") -> Path:
        repo = tmp_path / name
        (repo / "calc").mkdir(parents=True)
        (repo / "tests").mkdir()
        (repo / "calc" / "__init__.py").write_text(CALC)
        (repo / "tests" / "test_calc.py").write_text(TESTS)
        (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "user.name", "User")
        git(repo, "config", "user.email", "user@example.com")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "calc")
        return repo

    return make


@pytest.fixture
def tasks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tasks = tmp_path / "created"
    monkeypatch.setenv("ONESHOT_TASKS_DIR", str(tasks))
    return tasks


@dataclass
class ToolAnswer:
    is_error: bool
    text: str

    @property
    def data(self) -> dict[str, Any]:
        assert not self.is_error, self.text
        return dict(json.loads(self.text))


class Capture:
    """A client session with ``python -m mcp_server`` for one repository."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, **arguments: Any) -> ToolAnswer:
        result = await self.session.call_tool(tool, arguments)
        text = "".join(getattr(block, "text", "") for block in result.content)
        return ToolAnswer(bool(result.is_error), text)


@asynccontextmanager
async def mcp_session(repo: Path, env: dict[str, str] | None = None) -> AsyncIterator[Capture]:
    """The real server as codex runs it: a subprocess on stdio, configured through its environment only."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server"],
        env={"ONESHOT_REPO": str(repo), "ONESHOT_TASKS_DIR": os.environ["ONESHOT_TASKS_DIR"], **(env or {})},
    )
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as session:
            await session.initialize()
            yield Capture(session)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
