"""``oneshot rebench pair``: the workspace is prepared (clone at the commit, commands run, pair.json written)
without codex; the session is codex started by ``oneshot capture`` (the capture MCP server's command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "sk-pair-" + "canary-90d1f4"  # split so no source file matches a search for it


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _oneshot(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_oneshot.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})},
                          check=False)  # fmt: skip


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    """A repo with a start commit (the research code) and a later one."""
    repo = tmp_path / "upstream"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "train.py").write_text("LR = 0.1\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "start")
    start = _git(repo, "rev-parse", "HEAD")
    (repo / "pkg" / "train.py").write_text("LR = 0.01\n")
    _git(repo, "commit", "-qam", "later")
    return repo, start


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pair.toml"
    path.write_text(text)
    return path


def test_pair_prepares_the_workspace_at_the_commit_and_writes_the_session_command(
    tmp_path: Path, upstream: tuple[Path, str]
) -> None:
    repo, start = upstream
    (tmp_path / ".env").write_text(f"export OPENAI_API_KEY='{SECRET}'\n# comment\nEXTRA=1\n")
    config = _config(
        tmp_path,
        f"""
[pair_programming]
repo_url = "{repo.as_uri()}"
repo_commit = "{start}"
repo_subdir = "pkg"
pre_commands = ["echo pre > pre.txt"]
install_commands = ["echo \\"installed with $EXTRA\\" > installed.txt", "cat pre.txt >> installed.txt"]
task_title = "Tune the learning rate"
task_description = "Find a better LR for pkg/train.py"
codex_model = "gpt-5-mini"
enable_tracing = true
run_id = "r1"
artifacts_save_path = "captured"
env_file = ".env"
""",
    )
    run = _oneshot(
        "rebench", "pair", "--config", config, "--workspace-dir", tmp_path / "ws", "--no-launch", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    root = tmp_path / "ws" / "r1"
    workdir = root / "repo" / "pkg"
    assert _git(workdir, "rev-parse", "HEAD") == start  # at the commit, on a branch of its own
    assert _git(workdir, "branch", "--show-current") == "oneshot-pair"
    assert (workdir / "train.py").read_text() == "LR = 0.1\n"
    assert (
        workdir / "installed.txt"
    ).read_text() == "installed with 1\npre\n"  # in order, in the subdir, env_file's env
    assert "$ echo pre > pre.txt" in (root / "install.log").read_text()
    record = json.loads((root / "pair.json").read_text())
    assert (record["commit"], record["workdir"], record["title"]) == (start, str(workdir), "Tune the learning rate")
    assert record["tasks_dir"] == str(tmp_path / "captured")
    command = record["command"]
    assert command[1:] == ["-m", "pytest_oneshot.cli", "capture", "--trace", "on", "--", "codex", "-m", "gpt-5-mini",
                           "Find a better LR for pkg/train.py"]  # fmt: skip
    assert f"session:   cd {workdir} && " in run.stdout
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert SECRET not in path.read_text(errors="replace"), path


def test_the_session_starts_codex_through_capture_in_the_workspace(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    """A stand-in ``codex`` on PATH records where and how ``oneshot capture`` started it."""
    repo, start = upstream
    bin_dir, seen = tmp_path / "bin", tmp_path / "seen.txt"
    bin_dir.mkdir()
    fake = bin_dir / "codex"
    fake.write_text(f'#!/bin/sh\n{{ echo "cwd=$(pwd)"; echo "args=$*"; cat "$CODEX_HOME/config.toml"; }} > {seen}\n')
    fake.chmod(0o755)
    (tmp_path / "user-codex").mkdir()
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    config = _config(
        tmp_path,
        f'[pair_programming]\nrepo_url = "{repo}"\nrepo_commit = "{start}"\ntask_description = "Tune it"\n'
        'enable_tracing = false\nkeep_workspace = false\nartifacts_save_path = "captured"\nenv_file = ".env"\n',
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CODEX_HOME": str(tmp_path / "user-codex")}
    run = _oneshot("rebench", "pair", "--config", config, "--workspace-dir", tmp_path / "ws", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    cwd, args, codex_config = seen.read_text().split("\n", 2)
    workdir = next((tmp_path / "ws").glob("*/repo"), None)
    assert workdir is None  # keep_workspace = false: removed once the session ended
    assert cwd.startswith(f"cwd={tmp_path / 'ws'}/") and cwd.endswith("/repo")
    assert args == "args=-m gpt-5-nano Tune it"
    assert "[mcp_servers.oneshot]" in codex_config and '"-m", "mcp_server"' in codex_config
    assert f'ONESHOT_TASKS_DIR = "{tmp_path / "captured"}"' in codex_config
    assert SECRET not in codex_config  # the env file's values reach the session's environment only


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ('repo_branch = "main"', "pair_programming.repo_url: required field is missing"),
        ('repo_url = "{repo}"\nrepo_comit = "x"', "pair_programming.repo_comit: unknown field"),
        ('repo_url = "{repo}"\nrepo_commit = "0000000"', "pair_programming.repo_commit: '0000000' is not a commit"),
        (
            'repo_url = "{repo}"\ninstall_commands = ["true", "exit 3"]',
            "pair_programming.install_commands[1]: `exit 3`",
        ),
        ('repo_url = "{repo}"\n[session]\nlimit_cost_usd = 5', "session: the Synth backend's session limits"),
        ('repo_url = "{missing}"', "pair_programming.repo_url: cannot clone"),
    ],
)
def test_a_bad_pair_config_is_one_line_naming_file_and_field(
    tmp_path: Path, upstream: tuple[Path, str], table: str, field: str
) -> None:
    repo, _ = upstream
    config = _config(tmp_path, "[pair_programming]\n" + table.format(repo=repo, missing=tmp_path / "nope") + "\n")
    run = _oneshot(
        "rebench", "pair", "--config", config, "--workspace-dir", tmp_path / "ws", "--no-launch", cwd=tmp_path
    )
    assert run.returncode == 2, run.stdout
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"oneshot: error: {config}: {field}"), line
