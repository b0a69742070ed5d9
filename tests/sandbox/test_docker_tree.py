"""The docker backend's scoring sandbox on the image's layers (:mod:`docker_tree`): a trial starts one
container, the tree is the image, the code under the tests cannot lift its limits, and where the
image cannot be mounted from here scoring is a container as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox import SandboxSpec, cgroup
from pytest_oneshot.sandbox.docker_tree import ImageTreeSandbox
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.task import Task

pytestmark = pytest.mark.docker

DockerTask = Callable[..., tuple[Task, Path]]  # the sandbox conftest's docker_task fixture


@pytest.fixture
def tree(docker_task: DockerTask, request: pytest.FixtureRequest) -> Callable[..., ImageTreeSandbox]:
    def make(**task_kwargs: Any) -> ImageTreeSandbox:
        task, snap = docker_task(**task_kwargs)
        spec = SandboxSpec(
            task=task, repo_snapshot=snap, trial_id=f"tree-{request.node.name}", run_id="t", scoring=True
        )
        sandbox = ImageTreeSandbox(spec)
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        return sandbox

    return make


def test_a_docker_trial_starts_one_container(
    engine: Engine, shipped_tasks: Path, run_and_parse: Callable[..., Any]
) -> None:
    since = int(time.time())
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=docker", "--oneshot-agent=oracle")
    run.result.assert_outcomes(passed=1)
    created = engine.api.events(
        since=since, until=int(time.time()) + 1, decode=True, filters={"type": "container", "event": "create"}
    )
    names = [event["Actor"]["Attributes"]["name"] for event in created]
    names = [name for name in names if run.report["run_id"] in name]  # other tests may run meanwhile
    assert len(names) == 1 and "-score" not in names[0], names


def test_the_tree_is_the_image_with_its_setup(tree: Callable[..., ImageTreeSandbox]) -> None:
    sandbox = tree(setup=["echo built > /etc/oneshot-setup && echo made > made.txt"])
    assert sandbox.container is None
    result = sandbox.exec(["sh", "-c", "cat /etc/oneshot-setup made.txt; git log --format=%s"])
    assert result.stdout == b"built\nmade\nstart\n", result.text()
    assert sandbox.read_file("made.txt") == b"made\n"


def test_the_code_under_the_tests_cannot_lift_its_limits_or_see_the_host(
    tree: Callable[..., ImageTreeSandbox],
) -> None:
    sandbox = tree()
    for script in (
        "echo 9999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "touch /usr/lib/python3/dist-packages/oneshot.pth",
    ):
        result = sandbox.exec(["sh", "-c", script])
        assert result.returncode != 0, (script, result.text())
    processes = sandbox.exec(["sh", "-c", "ls /proc | grep -c '^[0-9]'"]).stdout
    assert int(processes) <= 4, "a pid namespace of its own: the shell, ls, grep (and bubblewrap's init)"


@pytest.mark.parametrize("why", ["mounts", "no-cgroup-v1"])
def test_where_the_tree_cannot_be_it_is_a_container(
    docker_task: DockerTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    task, snap = docker_task()
    mounts = {tmp_path: "/opt/tool"} if why == "mounts" else {}
    if why == "no-cgroup-v1":  # as on a cgroup v2 host, which this machine is not
        monkeypatch.setattr(cgroup.Limits, "create", classmethod(lambda cls, cpus, memory_mb: None))
    spec = SandboxSpec(task=task, repo_snapshot=snap, trial_id=f"tree-{why}", run_id="t", scoring=True, mounts=mounts)
    sandbox = ImageTreeSandbox(spec)
    try:
        sandbox.start()
        assert sandbox.container is not None and sandbox.container.uses_server
        sandbox.write_file("calc.py", b"x = 1\n")
        assert sandbox.exec(["cat", "calc.py"]).stdout == b"x = 1\n"
    finally:
        sandbox.stop()
