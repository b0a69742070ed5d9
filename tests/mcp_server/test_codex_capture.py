"""The whole capture path with the real codex binary: ``oneshot capture -- codex exec ...`` on a user's repo.

Only the model is scripted (the Responses server on 127.0.0.1): codex starts the capture server from the
per-session CODEX_HOME that ``oneshot capture`` layers over the user's, calls ``repo_start_task_v1``,
edits with ``apply_patch``, runs the tests, calls ``repo_end_task_v1``. The created task is then
prepared and run by the plugin: oracle passes, nop fails. With the tracing proxy, the task's ``trace/``
holds the whole session, and no file anywhere holds the API key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.model.cassette import Turn, apply_patch, exec_command, mcp_call, message
from pytest_oneshot.model.catalog import catalog_for
from pytest_oneshot.model.scripted import ScriptedResponsesServer
from tests.mcp_server.conftest import git

pytestmark = pytest.mark.codex

CANARY = "sk-canary-" + "c0dexcapture42"
PATCH = (
    "*** Begin Patch\n*** Update File: calc/__init__.py\n@@\n-    return a - b\n+    return a + b\n"
    "*** Add File: tests/test_add.py\n+from calc import add\n+\n+\n+def test_add():\n+    assert add(2, 3) == 5\n"
    "*** End Patch\n"
)


def _script() -> list[Turn]:
    start = {"task_title": "Fix add", "notes": "calc.add subtracts instead of adding: make it add, with a test."}
    return [
        Turn(output=[mcp_call("mcp__oneshot", "repo_start_task_v1", start, call_id="start")]),
        Turn(output=[apply_patch(PATCH, call_id="patch")]),
        Turn(output=[exec_command(f"{sys.executable} -m pytest -q -p no:cacheprovider tests", call_id="run")]),
        Turn(output=[mcp_call("mcp__oneshot", "repo_end_task_v1", {"summary": "add adds; test_add"}, call_id="end")]),
        Turn(output=[message("Captured the task.")]),
    ]


def _user_codex_home(home: Path, base_url: str) -> Path:
    """A user's own codex setup: their provider (the scripted model here), keyed by $OPENAI_API_KEY."""
    home.mkdir()
    (home / "catalog.json").write_text(json.dumps(catalog_for(["test-model"])))
    (home / "config.toml").write_text(
        f'# my codex config\nmodel = "test-model"\nmodel_provider = "mine"\n'
        f'model_catalog_json = "{home / "catalog.json"}"\n\n'
        f'[model_providers.mine]\nname = "mine"\nbase_url = "{base_url}"\nwire_api = "responses"\n'
        'env_key = "OPENAI_API_KEY"\nrequest_max_retries = 0\nstream_max_retries = 0\n\n'
        "[analytics]\nenabled = false\n\n[features]\nplugins = false\n"
    )
    return home


def _tool_json(output: str) -> dict[str, Any]:
    """An MCP tool's JSON answer as codex hands it to the model (``Wall time: ...\nOutput:{...}``)."""
    return dict(json.loads(output[output.index("{") :]))


@pytest.mark.parametrize("trace", ["off", "on"])
def test_a_codex_session_is_captured_prepared_and_graded(
    codex_bin: Path,
    make_repo: Callable[..., Path],
    tasks_dir: Path,
    tmp_path: Path,
    pytester: pytest.Pytester,
    request: pytest.FixtureRequest,
    trace: str,
) -> None:
    env = {"OPENAI_API_KEY": CANARY, "ONESHOT_TASKS_DIR": str(tasks_dir), "ONESHOT_STATE_DIR": str(tmp_path / "st")}
    if trace == "on":
        env["ONESHOT_MITMDUMP"] = str(request.getfixturevalue("mitmdump"))
    repo = make_repo()
    with ScriptedResponsesServer() as server:
        home = _user_codex_home(tmp_path / "user-codex", server.add_script("capture", _script()))
        user_config = (home / "config.toml").read_bytes()
        codex = [str(codex_bin), "exec", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check"]
        argv = [sys.executable, "-m", "pytest_oneshot.cli", "capture", "--trace", trace, "--", *codex]
        argv += ["--json", "-C", str(repo), "-m", "test-model", "Fix calc.add and capture it as a task."]
        done = subprocess.run(
            argv,
            cwd=repo,
            env={**__import__("os").environ, **env, "CODEX_HOME": str(home)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        requests = server.requests("capture")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [r.turn for r in requests] == [0, 1, 2, 3, 4], "codex ran the whole script"
    outputs = requests[-1].tool_outputs()
    slug = _tool_json(outputs["start"])["task_slug"]
    assert "2 passed" in outputs["run"], outputs["run"]
    ended = _tool_json(outputs["end"])
    assert ended["tests"]["status"] == "validated" and ended["touched_files"] == [
        "calc/__init__.py",
        "tests/test_add.py",
    ]

    assert (home / "config.toml").read_bytes() == user_config, "the user's codex config was edited"
    assert sorted(line.split() for line in git(repo, "status", "--porcelain").splitlines()) == [
        ["??", "tests/test_add.py"],
        ["M", "calc/__init__.py"],
    ], "the branch, index and tree hold only the agent's edits"
    assert git(repo, "log", "--branches", "--format=%s") == "calc"

    created = tasks_dir / slug
    assert Path(ended["task_dir"]) == created
    meta = json.loads((created / "tb_meta.json").read_text())
    assert meta["tests"]["fail_to_pass"] == ["tests/test_add.py::test_add"]
    trace_record = json.loads((created / "trace" / "session_clean.json").read_text())
    session_id = (created / "trace" / "session_id.txt").read_text()
    assert session_id.startswith("capture-")
    if trace == "on":
        assert trace_record["n_requests"] == 5 and trace_record["session_id"] == session_id, "the whole session"
        called = [c["name"] for t in trace_record["traces"] for c in (t["output"] or {}).get("tool_calls", [])]
        assert called == ["repo_start_task_v1", "apply_patch", "exec_command", "repo_end_task_v1"]
    else:
        assert trace_record["traces"] == [] and "no tracing proxy" in trace_record["note"]

    prepared = subprocess.run(
        [sys.executable, "-m", "pytest_oneshot.cli", "prepare", str(created), "--out", str(pytester.path / "tasks")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(prepared) == pytester.path / "tasks" / "fix-add"
    for task in (created, Path(prepared)):
        for agent, outcome in (("oracle", {"passed": 1}), ("nop", {"failed": 1})):
            result = pytester.runpytest_subprocess(str(task), f"--oneshot-agent={agent}", "-p", "no:cacheprovider")
            result.assert_outcomes(**outcome)

    leaks = [
        p for d in (created, Path(prepared)) for p in d.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()
    ]
    assert leaks == []
    clone = tmp_path / "unbundled"
    git(tmp_path, "clone", "-q", "--mirror", str(created / "repo.bundle"), str(clone))
    assert CANARY not in git(clone, "log", "--all", "-p")
    if trace == "on":
        raw = list((tmp_path / "st").rglob("*.sqlite3*"))
        assert raw and not [p for p in raw if CANARY.encode() in p.read_bytes()], "the raw trace store holds no key"
