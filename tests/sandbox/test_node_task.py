"""A task in another language: a small Node project whose hidden tests run with ``node --test`` and
are graded by the command's exit code (``tests.mode: exit_code``), in the docker sandbox with
``nodejs`` from ``environment.system_packages``: the oracle passes, nop fails."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

_FILES = {
    "package.json": '{"name": "add", "version": "1.0.0", "scripts": {"test": "node --test test/"}}\n',
    "src/add.js": "function add(a, b) {\n  return a - b;\n}\n\nmodule.exports = { add };\n",
    "README.md": "# add\n",
}
HIDDEN_TEST = """\
const test = require("node:test");
const assert = require("node:assert");
const { add } = require("../src/add");

test("adds two numbers", () => {
  assert.strictEqual(add(2, 3), 5);
});

test("zero plus zero", () => {
  assert.strictEqual(add(0, 0), 0);
});
"""
_GIT_ENV = {"GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def build_node_task(src: Path, dest: Path) -> Path:
    """``add`` subtracts; the reference diff makes it add; the hidden ``test/add.test.js`` grades it."""
    src.mkdir(parents=True)
    _git(src, "init", "-q", "-b", "main")
    for rel, text in _FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    _git(src, "add", "-A")
    _git(src, "commit", "-qm", "start")
    start = _git(src, "rev-parse", "HEAD").strip()
    (src / "src/add.js").write_text(_FILES["src/add.js"].replace("a - b", "a + b"))
    dest.mkdir(parents=True)
    (dest / "diff.patch").write_text(_git(src, "diff"))
    _git(src, "bundle", "create", str(dest / "repo.bundle"), "main")
    (dest / "hidden" / "test").mkdir(parents=True)
    (dest / "hidden" / "test" / "add.test.js").write_text(HIDDEN_TEST)
    meta: dict[str, Any] = {
        "task_id": dest.name,
        "repo": {"bundle": "repo.bundle", "branch": "main", "start_commit_sha": start},
        "lm": {"instructions": "add() in src/add.js subtracts; make it add."},
        "evaluation": {"rubrics": [{"id": "correctness"}]},
        "tests": {"mode": "exit_code", "command": "node --test test/", "rubric_id": "correctness"},
        "environment": {"system_packages": ["nodejs"]},
        "limits": {"agent_timeout_sec": 60, "tests_timeout_sec": 60},
    }
    (dest / "tb_meta.json").write_text(json.dumps(meta, indent=2))
    return dest


@pytest.mark.parametrize(("agent", "outcome"), [("oracle", "passed"), ("nop", "failed")])
def test_node_task_in_docker(
    pytester: pytest.Pytester,
    tmp_path: Path,
    engine: object,
    run_and_parse: Callable[..., Any],
    agent: str,
    outcome: str,
) -> None:
    build_node_task(tmp_path / "src", pytester.path / "tasks" / "node-add")
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", f"--oneshot-agent={agent}")
    item = run.items()[f"node-add[{agent}-r0]"]
    assert item["outcome"] == outcome, item["reason"]
    assert item["tests"]["statuses"] == {"tests.command": "passed" if outcome == "passed" else "failed"}
    assert item["rubrics"][0]["score"] == (1.0 if outcome == "passed" else 0.0)
    log = (Path(item["run_dir"]) / "tests.log").read_text()
    assert ("# fail 0" if outcome == "passed" else "# fail 1") in log, log[-2000:]
