"""Fixtures for the docker sandbox tests: a real engine and small tasks built in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.docker import DockerSandbox
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.sandbox.modal_client import CLIENT_ENV
from pytest_oneshot.task import Task, load_task

CANARY = "sk-oneshot-canary-7f3a9c2e"
"""A fake secret put in the task's hidden files and the host environment; no image may hold it."""

# Fixed dates make commit shas, and so image tags, the same on every run: images are reused.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), **_GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


DockerTask = Callable[..., tuple[Task, Path]]


@pytest.fixture
def docker_task(tmp_path: Path, engine: Engine) -> DockerTask:
    """Build a task dir (bundle holding the start commit only, hidden files) and its repo snapshot."""

    def make(
        name: str = "demo",
        *,
        setup: Sequence[str] = (),
        tests_setup: Sequence[str] = (),
        dockerfile: str | None = None,
        subdir: str = "",
        files: dict[str, str] | None = None,
    ) -> tuple[Task, Path]:
        source = tmp_path / f"{name}-source"
        source.mkdir()
        _git(source, "init", "-q", "-b", "main")
        for rel, text in (files or {"calc.py": "def add(a, b):\n    return a - b\n", "pkg/README": "sub\n"}).items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_text(text)
        _git(source, "add", "-A")
        _git(source, "commit", "-q", "-m", "start")
        start = _git(source, "rev-parse", "HEAD")
        _git(source, "branch", "start")
        (source / "calc.py").write_text(f"def add(a, b):\n    return a + b  # {CANARY}\n")
        _git(source, "commit", "-q", "-am", f"the answer {CANARY}")
        end = _git(source, "rev-parse", "HEAD")
        task_dir = tmp_path / name
        (task_dir / "tests").mkdir(parents=True)
        _git(source, "bundle", "create", "-q", str(task_dir / "repo.bundle"), "start")
        (task_dir / "diff.patch").write_text(_git(source, "diff", start, end) + "\n")
        (task_dir / "notes.md").write_text(f"the fix flips the sign {CANARY}\n")
        (task_dir / "tests" / "test_calc.py").write_text(
            f"# {CANARY}\nfrom calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
        )
        environment: dict[str, object] = {"setup": list(setup)}
        if dockerfile is not None:
            (task_dir / "Dockerfile").write_text(dockerfile)
            environment["dockerfile"] = "Dockerfile"
        meta = {
            "task_id": name,
            "repo": {"bundle": "repo.bundle", "start_commit_sha": start, "end_commit_sha": end, "subdir": subdir},
            "lm": {"instructions": "fix add"},
            "tests": {"fail_to_pass": ["tests/test_calc.py::test_add"], "setup": list(tests_setup)},
            "environment": environment,
        }
        (task_dir / "tb_meta.json").write_text(json.dumps(meta))
        task = load_task(task_dir)
        return task, snapshot(task, cache_dir=tmp_path / "cache")

    return make


MakeSandbox = Callable[..., DockerSandbox]


@pytest.fixture
def make_sandbox(docker_task: DockerTask, request: pytest.FixtureRequest) -> MakeSandbox:
    """Start a DockerSandbox for a fresh small task; stopped at teardown."""

    def make(*, task_kwargs: dict[str, Any] | None = None, **spec_kwargs: Any) -> DockerSandbox:
        task, snap = docker_task(**(task_kwargs or {}))
        trial = f"{request.node.name}-{task.name}-{os.getpid()}"  # a test may start several
        sandbox = DockerSandbox(
            SandboxSpec(task=task, repo_snapshot=snap, trial_id=trial, run_id="test-run", **spec_kwargs)
        )
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        return sandbox

    return make


NO_PYTHON = "FROM oneshot-base:bookworm\nRUN rm -f /usr/bin/python3*\n"
"""An image whose python3 cannot run the exec server: the sandbox falls back to ``docker exec``."""


@pytest.fixture(params=["server", "docker-exec"])
def any_sandbox(make_sandbox: MakeSandbox, request: pytest.FixtureRequest) -> MakeSandbox:
    """``make_sandbox`` once per way commands reach the container: the in-container exec server,
    and ``docker exec`` in an image without python3 (the contract is the same)."""
    server = request.param == "server"

    def make(*, task_kwargs: dict[str, Any] | None = None, **spec_kwargs: Any) -> DockerSandbox:
        task_kwargs = {**(task_kwargs or {}), **({} if server else {"dockerfile": NO_PYTHON})}
        sandbox = make_sandbox(task_kwargs=task_kwargs, **spec_kwargs)
        assert sandbox.uses_server == server
        return sandbox

    return make


MODAL_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
"""Where the test double of Modal's client (``fake_modal``) lives."""


@pytest.fixture
def modal_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Engine) -> Path:
    """The modal sandbox on the double, its state (and call journal) in a fresh dir."""
    home = tmp_path / "fake-modal"
    monkeypatch.setenv(CLIENT_ENV, "fake_modal")
    monkeypatch.setenv("FAKE_MODAL_HOME", str(home))
    path = os.pathsep.join(filter(None, [str(MODAL_FIXTURES), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.syspath_prepend(str(MODAL_FIXTURES))  # this process's own calls too
    return home
