"""The capture MCP server through the SDK's own client over stdio: the real protocol, the real git.

Each test starts ``python -m mcp_server`` as a subprocess, as codex does, and reads the answers the
model would read. The created tasks then run under the plugin (oracle passes, nop fails).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.task import load_task
from tests.mcp_server.conftest import FIXED, NEW_TEST, git, mcp_session, run

TOOLS = {"repo_check_readiness_v1", "repo_autofix_readiness_v1", "repo_start_task_v1", "repo_end_task_v1"}
CANARY = "sk-canary-" + "c4pture0b7e11"


def _user_view(repo: Path) -> dict[str, str]:
    """What the user sees of their repo besides the files: branch, HEAD, the index's bytes, the status.

    The index is hashed before ``git status`` runs, since status itself may rewrite it; status runs after a
    full refresh, so a same-size edit in the same second as the last commit still shows (racy git).
    """
    view = {
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "log": git(repo, "log", "--branches", "--tags", "--format=%H"),  # history on the user's refs
    }
    git(repo, "update-index", "-q", "--really-refresh")
    return {**view, "status": git(repo, "status", "--porcelain", "--untracked-files=all")}


def _edit(repo: Path, new_test: str = NEW_TEST) -> None:
    """The agent's own edits: fix the bug, add a test, add a binary file."""
    (repo / "calc" / "__init__.py").write_text(FIXED)
    with open(repo / "tests" / "test_calc.py", "a") as handle:
        handle.write(new_test)
    (repo / "calc" / "logo.bin").write_bytes(bytes(range(256)) * 4)


def test_tools_have_the_original_names_and_arguments(make_repo: Callable[..., Path], tasks_dir: Path) -> None:
    async def listed() -> dict[str, dict[str, object]]:
        async with mcp_session(make_repo()) as capture:
            return {tool.name: tool.input_schema for tool in (await capture.session.list_tools()).tools}

    tools = run(listed())
    assert set(tools) == TOOLS
    start = tools["repo_start_task_v1"]
    assert start["required"] == ["task_title"]
    assert {"task_title", "notes", "labels"} <= set(start["properties"])  # type: ignore[arg-type]
    assert tools["repo_end_task_v1"]["required"] == ["summary"]


def test_a_session_becomes_a_task_that_oracle_passes_and_nop_fails(
    make_repo: Callable[..., Path], tasks_dir: Path, pytester: pytest.Pytester
) -> None:
    repo = make_repo()
    (repo / "scratch.txt").write_text("the user's own uncommitted work\n")
    (repo / "tests" / "test_calc.py").write_text((repo / "tests" / "test_calc.py").read_text() + "# dirty\n")
    git(repo, "update-index", "-q", "--really-refresh")
    before = _user_view(repo)

    async def session() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        async with mcp_session(repo) as capture:
            started = (await capture.call("repo_start_task_v1", task_title="Fix add!", notes="add subtracts")).data
            again = (await capture.call("repo_start_task_v1", task_title="Fix add!")).data
            assert again["task_slug"] == started["task_slug"], "a retried start is the same task"
            _edit(repo)
            ended = (await capture.call("repo_end_task_v1", summary="fixed the sign", labels=["bugfix"])).data
            retried = (await capture.call("repo_end_task_v1", summary="fixed the sign")).data
            return started, ended, retried

    started, ended, retried = run(session())
    assert retried["task_dir"] == ended["task_dir"] and retried["already_ended"] is True
    after = _user_view(repo)
    assert after["branch"] == before["branch"] and after["head"] == before["head"] and after["log"] == before["log"]
    assert after["index"] == before["index"], "the user's index was written"
    assert (repo / "scratch.txt").read_text() == "the user's own uncommitted work\n"
    assert sorted(line.split() for line in after["status"].splitlines()) == [
        ["??", "calc/logo.bin"],
        ["??", "scratch.txt"],
        ["M", "calc/__init__.py"],
        ["M", "tests/test_calc.py"],
    ], "only the agent's edits differ"

    task_dir = Path(str(ended["task_dir"]))
    assert task_dir.parent == tasks_dir and task_dir.name.startswith("fix-add_")
    assert ended["touched_files"] == ["calc/__init__.py", "calc/logo.bin", "tests/test_calc.py"]
    for name in ("tb_meta.json", "LM_INSTRUCTIONS.md", "repo_info.json", "diff.patch", "notes.md", "repo.bundle"):
        assert (task_dir / name).is_file(), name
    assert (task_dir / "trace" / "session_id.txt").is_file()
    assert (task_dir / "evaluation" / "rubric_template.md").is_file()
    patch = (task_dir / "diff.patch").read_text()
    assert "GIT binary patch" in patch and "new file mode" in patch
    meta = json.loads((task_dir / "tb_meta.json").read_text())
    assert meta["tests"]["fail_to_pass"] == ["tests/test_calc.py::test_add"]
    assert meta["tests"]["pass_to_pass"] == ["tests/test_calc.py::test_zero"]
    assert meta["validation"]["status"] == "validated"
    assert meta["metadata"] == {"title": "Fix add!", "tags": ["bugfix"]}
    assert meta["repo"]["start_commit_sha"] == started["start_commit"]
    assert git(repo, "rev-parse", f"refs/oneshot/{started['task_slug']}/start") == started["start_commit"]
    assert "scratch.txt" in git(repo, "ls-tree", "--name-only", str(started["start_commit"])), "untracked included"
    assert json.loads((task_dir / "repo_info.json").read_text())["touched_files"] == ended["touched_files"]
    assert "- calc/__init__.py" in (task_dir / "notes.md").read_text()
    assert load_task(task_dir).spec.validation is not None

    pytester.makefile(".ini", pytest="[pytest]\n")
    for agent, outcome in (("oracle", {"passed": 1}), ("nop", {"failed": 1})):
        result = pytester.runpytest_subprocess(str(task_dir), f"--oneshot-agent={agent}", "-p", "no:cacheprovider")
        result.assert_outcomes(**outcome)


def test_errors_are_mcp_errors_the_model_can_act_on(
    make_repo: Callable[..., Path], tasks_dir: Path, tmp_path: Path
) -> None:
    repo = make_repo()
    plain = tmp_path / "not-a-repo"
    plain.mkdir()

    async def calls() -> None:
        async with mcp_session(repo) as capture:
            answer = await capture.call("repo_end_task_v1", summary="nothing")
            assert answer.is_error and "call repo_start_task_v1 first" in answer.text
            await capture.call("repo_start_task_v1", task_title="one")
            answer = await capture.call("repo_start_task_v1", task_title="another")
            assert answer.is_error and "call repo_end_task_v1" in answer.text
            answer = await capture.call("repo_end_task_v1", summary="no change")
            assert answer.is_error and "nothing changed" in answer.text
        async with mcp_session(plain) as capture:
            for tool, args in (("repo_check_readiness_v1", {}), ("repo_start_task_v1", {"task_title": "x"})):
                answer = await capture.call(tool, **args)
                assert answer.is_error and "not inside a git working tree" in answer.text, answer.text

    run(calls())


def _conflict(repo: Path, how: str) -> None:
    """Leave ``repo`` mid-merge or mid-rebase with a conflict in calc/__init__.py."""
    branch = git(repo, "symbolic-ref", "--short", "HEAD")
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "calc" / "__init__.py").write_text("def add(a, b):\n    return b - a\n")
    git(repo, "commit", "-qam", "other")
    git(repo, "checkout", "-q", branch)
    (repo / "calc" / "__init__.py").write_text("def add(a, b):\n    return a + b + 0\n")
    git(repo, "commit", "-qam", "main")
    args = ["merge", "other"] if how == "merge" else ["rebase", "other"]
    assert subprocess.run(["git", *args], cwd=repo, capture_output=True).returncode != 0


@pytest.mark.parametrize("how", ["merge", "rebase"])
@pytest.mark.parametrize("where", ["subdir", "worktree"])
def test_a_merge_or_rebase_in_progress_blocks_the_start(
    make_repo: Callable[..., Path], tasks_dir: Path, tmp_path: Path, how: str, where: str
) -> None:
    repo = make_repo()
    if where == "worktree":
        git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "wt")
        repo = tmp_path / "wt"
    _conflict(repo, how)
    cwd = repo / "tests" if where == "subdir" else repo

    async def calls() -> None:
        async with mcp_session(cwd) as capture:
            report = (await capture.call("repo_check_readiness_v1")).data
            ids = {issue["id"] for issue in report["issues"]}
            assert report["ok"] is False and {f"{how}_in_progress", "merge_conflicts"} <= ids, report
            fixed = (await capture.call("repo_autofix_readiness_v1")).data
            assert fixed["ok"] is False and fixed["fixed"] == [], "a merge or rebase is the user's to finish"
            answer = await capture.call("repo_start_task_v1", task_title="blocked")
            assert answer.is_error and f"a {how} is in progress" in answer.text and "--abort" in answer.text

    run(calls())
    assert not list(tasks_dir.glob("*")) and not git(repo, "for-each-ref", "refs/oneshot")


def test_autofix_sets_a_missing_identity(make_repo: Callable[..., Path], tasks_dir: Path, tmp_path: Path) -> None:
    repo = make_repo()
    git(repo, "config", "--unset", "user.name")

    async def calls() -> dict[str, object]:
        async with mcp_session(repo, {"HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}) as capture:
            assert "no_git_name" in (await capture.call("repo_check_readiness_v1")).text
            return (await capture.call("repo_autofix_readiness_v1")).data

    assert run(calls())["fixed"] == ["no_git_name"]
    assert git(repo, "config", "user.name") == "OneShot User"


def test_two_repos_capture_at_once(make_repo: Callable[..., Path], tasks_dir: Path) -> None:
    repos = [make_repo("one"), make_repo("two")]

    async def session(repo: Path) -> dict[str, object]:
        async with mcp_session(repo) as capture:
            assert not (await capture.call("repo_start_task_v1", task_title=f"Fix add in {repo.name}")).is_error
            _edit(repo)
            return (await capture.call("repo_end_task_v1", summary=repo.name)).data

    async def both() -> list[dict[str, object]]:
        return list(await asyncio.gather(*(session(repo) for repo in repos)))

    results = run(both())
    assert len({result["task_dir"] for result in results}) == 2
    for repo, result in zip(repos, results, strict=True):
        assert (repo / ".git" / "oneshot" / "state.json").is_file()
        meta = json.loads((Path(str(result["task_dir"])) / "tb_meta.json").read_text())
        assert meta["metadata"]["title"] == f"Fix add in {repo.name}"


def test_a_new_test_that_already_passes_at_the_start_is_flagged(
    make_repo: Callable[..., Path], tasks_dir: Path
) -> None:
    repo = make_repo()

    async def session() -> dict[str, object]:
        async with mcp_session(repo) as capture:
            await capture.call("repo_start_task_v1", task_title="Useless test")
            _edit(repo, new_test="\n\ndef test_zero_again():\n    assert add(1, 0) == 1\n")
            return (await capture.call("repo_end_task_v1", summary="a test that proves nothing")).data

    ended = run(session())
    tests = ended["tests"]
    assert isinstance(tests, dict) and tests["status"] == "no_fail_to_pass" and tests["fail_to_pass"] == []
    assert "already pass" in tests["message"]
    meta = json.loads((Path(str(ended["task_dir"])) / "tb_meta.json").read_text())
    assert meta["validation"]["status"] == "no_fail_to_pass"


def test_keys_never_reach_a_task(make_repo: Callable[..., Path], tasks_dir: Path) -> None:
    repo = make_repo()
    (repo / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n")

    async def session() -> dict[str, object]:
        async with mcp_session(repo, {"OPENAI_API_KEY": CANARY}) as capture:
            refused = await capture.call("repo_start_task_v1", task_title="leaky")
            assert refused.is_error and ".env" in refused.text and "API key" in refused.text
            (repo / ".env").unlink()
            await capture.call("repo_start_task_v1", task_title="clean", notes=f"the key is {CANARY}")
            _edit(repo)
            return (await capture.call("repo_end_task_v1", summary=f"done; key {CANARY}")).data

    task_dir = Path(str(run(session())["task_dir"]))
    assert not git(repo, "for-each-ref", "refs/oneshot/leaky*"), "the refused snapshot's ref is removed"
    files = [path for path in task_dir.rglob("*") if path.is_file()]
    assert [path for path in files if CANARY.encode() in path.read_bytes()] == []
    assert CANARY not in (repo / ".git" / "oneshot" / "state.json").read_text()
    clone = tasks_dir.parent / "unbundled"
    git(tasks_dir.parent, "clone", "-q", "--mirror", str(task_dir / "repo.bundle"), str(clone))
    everything = git(clone, "log", "--all", "-p", "--format=%H %B")
    assert "calc" in everything and CANARY not in everything, "the bundle's commits and files hold no key"
