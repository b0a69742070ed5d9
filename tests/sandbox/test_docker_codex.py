"""The real Codex CLI inside a container: it replays the task's cassette over ``--network host``
to the loopback model server, and the hidden tests pass; the key never enters the container."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = [pytest.mark.docker, pytest.mark.codex]


def test_codex_replay_solves_a_task_in_docker(
    shipped_tasks: Path,
    engine: Engine,
    codex_bin: Path,
    run_and_parse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-docker-codex-0042")
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=docker", "--oneshot-agent=codex")
    run.result.assert_outcomes(passed=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["agent"]["status"] == "completed"
    assert item["changed_files"] == ["pager/core.py"]
    events = (Path(item["run_dir"]) / "agent" / "events.jsonl").read_text()
    assert '"type": "file_change"' in events and '"type": "command_execution"' in events
    for path in Path(item["run_dir"]).rglob("*"):
        if path.is_file():
            assert b"sk-canary-docker-codex" not in path.read_bytes(), path
