"""``oneshot rebench pair --config FILE.toml``: a pair-programming workspace for a research-bench task.

The config is OneShot re-bench's ``[pair_programming]`` table (``repo_url``, ``repo_branch``,
``repo_commit``, ``repo_subdir``, ``workspace_base_dir``, ``install_commands``, ``pre_commands``,
``task_title``, ``task_description``, ``codex_model``, ``enable_tracing``, ``keep_workspace``,
``run_id``, ``artifacts_save_path``, ``env_file``). The command clones the repo at the commit into
``<workspace>/repo``, runs ``pre_commands`` then ``install_commands`` there (output in
``install.log``), writes ``pair.json`` (what was prepared and the command that starts the session),
and starts codex through ``oneshot capture`` -- the capture MCP server and the tracing proxy, in a
CODEX_HOME of the session's own -- so the session can be frozen as a task (``oneshot capture`` comes
from ``mcp_server/``; the server itself needs the ``capture`` extra, the MCP SDK).

Unlike the original: nothing is installed unless the config says so (its default ``uv pip install -e
.`` failed wherever uv was missing); a token never goes into the clone URL (git's own credential
helpers apply); ``env_file``'s values reach the session's environment and are written nowhere; and
the Synth backend's ``[session]`` limits are refused rather than silently not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oneshot_shared.paths import state_dir
from pytest_oneshot.errors import OneshotError, TaskFormatError
from pytest_oneshot.files import write_atomic
from pytest_oneshot.repo import git

__all__ = ["PairConfig", "Workspace", "add_commands", "load_pair_config", "prepare_workspace"]

CAPTURE_GROUP = "capture"
"""The ``oneshot capture`` command of the capture MCP server (``mcp_server/``), which starts codex."""
INSTALL_TIMEOUT_SEC = 1800.0


class PairConfig(BaseModel):
    """``[pair_programming]`` of a re-bench config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_url: str = Field(..., min_length=1)
    repo_branch: str = ""
    repo_commit: str = ""
    repo_subdir: str = ""
    workspace_base_dir: str = ""
    install_commands: list[str] = Field(default_factory=list)
    pre_commands: list[str] = Field(default_factory=list)
    task_title: str = ""
    task_description: str = ""
    codex_model: str = "gpt-5-nano"
    enable_tracing: bool = True
    keep_workspace: bool = True
    run_id: str = ""
    artifacts_save_path: str = ""
    env_file: str = ""


def load_pair_config(path: Path) -> PairConfig:
    """Read ``[pair_programming]`` of ``path``.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskFormatError(str(path), None, f"cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TaskFormatError(str(path), None, f"not valid TOML: {exc}") from None
    if "session" in raw:
        raise TaskFormatError(
            str(path), "session", "the Synth backend's session limits are not supported here (remove the table)"
        )
    table = raw.get("pair_programming")
    if not isinstance(table, dict):
        raise TaskFormatError(str(path), "pair_programming", "required table is missing")
    try:
        return PairConfig.model_validate(table)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in ("pair_programming", *error.get("loc", ())))
        kind = error.get("type")
        problem = {"missing": "required field is missing", "extra_forbidden": "unknown field"}.get(str(kind))
        raise TaskFormatError(str(path), field, problem or f"{error.get('msg')} (got {error.get('input')!r})") from None


class Workspace(BaseModel):
    """What ``prepare_workspace`` made: written to ``<root>/pair.json`` (no secret in it)."""

    root: Path
    workdir: Path
    run_id: str
    repo_url: str
    commit: str
    branch: str
    tasks_dir: Path | None
    command: list[str]
    """Starts the session from ``workdir``."""


def _env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and quotes allowed); read for the session only, written nowhere."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise OneshotError(f"{path}:{number}: not a KEY=VALUE line")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _session_command(config: PairConfig) -> list[str]:
    codex = ["codex", "-m", config.codex_model, *([config.task_description] if config.task_description else [])]
    trace = "on" if config.enable_tracing else "off"
    return [sys.executable, "-m", "pytest_oneshot.cli", CAPTURE_GROUP, "--trace", trace, "--", *codex]


def _run_commands(config: PairConfig, path: Path, workdir: Path, log: Path, env: dict[str, str]) -> None:
    steps = [("pre_commands", config.pre_commands), ("install_commands", config.install_commands)]
    with log.open("ab") as out:
        for field, commands in steps:
            for index, command in enumerate(commands):
                out.write(f"$ {command}\n".encode())
                out.flush()
                try:
                    code = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          timeout=INSTALL_TIMEOUT_SEC).returncode  # fmt: skip
                except subprocess.TimeoutExpired:
                    code = None
                if code != 0:
                    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                    how = "timed out" if code is None else f"failed (exit {code})"
                    raise TaskFormatError(
                        str(path), f"pair_programming.{field}[{index}]", f"`{command}` {how}: {tail} (log: {log})"
                    )


def prepare_workspace(config: PairConfig, path: Path, workspace_dir: Path | None = None) -> Workspace:
    """Clone at the commit, run the commands, write ``pair.json``.

    Raises:
        OneshotError: the repo, commit or a command failed (naming the config field).
    """
    base = path.parent
    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    parent = workspace_dir or (_resolve(base, config.workspace_base_dir) if config.workspace_base_dir else None)
    root = (parent or state_dir() / "pair") / run_id
    if root.exists() and any(root.iterdir()):
        raise OneshotError(f"{root}: the workspace exists and is not empty (another run_id, or remove it)")
    env = {**os.environ, **(_env_file(_resolve(base, config.env_file)) if config.env_file else {})}
    url = config.repo_url
    if "://" not in url and not url.startswith("git@") and _resolve(base, url).exists():
        url = str(_resolve(base, url))  # a local path, relative to the config file
    repo = root / "repo"
    root.mkdir(parents=True, exist_ok=True)
    try:
        git("clone", "-q", "--no-checkout", url, str(repo))
    except RuntimeError as exc:
        raise TaskFormatError(str(path), "pair_programming.repo_url", f"cannot clone: {exc}") from None
    target = config.repo_commit or (f"origin/{config.repo_branch}" if config.repo_branch else "HEAD")
    branch = config.repo_branch or "oneshot-pair"
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{target}^{{commit}}", cwd=repo)
        git("checkout", "-q", "-B", branch, commit, cwd=repo)
    except RuntimeError as exc:
        field = "repo_commit" if config.repo_commit else "repo_branch"
        problem = f"{target!r} is not a commit of {config.repo_url} ({exc})"
        raise TaskFormatError(str(path), f"pair_programming.{field}", problem) from None
    workdir = repo / config.repo_subdir
    if not workdir.is_dir():
        raise TaskFormatError(str(path), "pair_programming.repo_subdir", f"not a directory at {commit[:12]}")
    _run_commands(config, path, workdir, root / "install.log", env)
    tasks_dir = _resolve(base, config.artifacts_save_path) if config.artifacts_save_path else None
    workspace = Workspace(root=root, workdir=workdir, run_id=run_id, repo_url=config.repo_url, commit=commit,
                          branch=branch, tasks_dir=tasks_dir, command=_session_command(config))  # fmt: skip
    record: dict[str, Any] = {**workspace.model_dump(mode="json"), "config": str(path), "title": config.task_title}
    write_atomic(root / "pair.json", json.dumps(record, indent=2).encode())
    return workspace


def _launch(workspace: Workspace, config: PairConfig, path: Path) -> int:
    env = {**os.environ, **(_env_file(_resolve(path.parent, config.env_file)) if config.env_file else {})}
    if workspace.tasks_dir is not None:
        env["ONESHOT_TASKS_DIR"] = str(workspace.tasks_dir)
    return subprocess.run(workspace.command, cwd=workspace.workdir, env=env, check=False).returncode


def _pair(args: argparse.Namespace) -> int:
    path = Path(args.config)
    config = load_pair_config(path)
    workspace = prepare_workspace(config, path, Path(args.workspace_dir) if args.workspace_dir else None)
    where = f"{workspace.repo_url} at {workspace.commit[:12]}, branch {workspace.branch}"
    print(f"workspace: {workspace.workdir} ({where})")
    print(f"session:   cd {shlex.quote(str(workspace.workdir))} && {shlex.join(workspace.command)}")
    if args.no_launch:
        return 0
    try:
        return _launch(workspace, config, path)
    finally:
        if args.cleanup or not config.keep_workspace:
            shutil.rmtree(workspace.root, ignore_errors=True)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rebench = subparsers.add_parser("rebench", help="Research-bench tasks (scored by a metric's improvement)")
    commands = rebench.add_subparsers(dest="rebench_command", required=True, metavar="COMMAND")
    pair = commands.add_parser("pair", help="Prepare a pair-programming workspace and start codex with capture")
    pair.add_argument("--config", required=True, help="TOML file with a [pair_programming] table")
    pair.add_argument("--workspace-dir", help="Parent of the workspace (default: workspace_base_dir, else state dir)")
    pair.add_argument("--no-launch", action="store_true", help="Prepare and print the session command only")
    pair.add_argument("--cleanup", action="store_true", help="Remove the workspace when the session ends")
    pair.set_defaults(func=_pair)
