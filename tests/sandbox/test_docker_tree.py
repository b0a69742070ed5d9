"""The docker backend's sandboxes on the image's layers (:mod:`docker_tree`): a trial starts no
container, the tree is the image, the code under the tests cannot lift its limits or change the
system, the agent's system is writable and its own, and where the image cannot be mounted from here
the sandbox is a container as before."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.change import compute_change, read_archive, read_host_dir, read_upper
from pytest_oneshot.errors import SandboxUnavailableError
from pytest_oneshot.owner import OWNER_FILE, Owner
from pytest_oneshot.sandbox import SandboxSpec, cgroup
from pytest_oneshot.sandbox.docker import DockerSandbox
from pytest_oneshot.sandbox.docker_tree import DockerFactory, ImageTreeSandbox
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.task import Task
from pytest_oneshot.workspace import fresh_manifest
from tests.workspace_edits import AGENT_EDITS, EDITED_FILES, assert_the_edits_are_the_change

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


def test_a_docker_trial_starts_no_container(
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
    assert names == [], "the agent's and the scoring sandbox are trees of the image's layers"


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


def test_the_agents_tree_has_a_writable_system_of_its_own_and_its_mounts(
    docker_task: DockerTask, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "tool").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "tool").chmod(0o755)
    task, snap = docker_task()
    agent, scoring = (
        ImageTreeSandbox(
            SandboxSpec(task=task, repo_snapshot=snap, trial_id=f"tree-{role}", run_id="t", scoring=role == "score",
                        mounts={tmp_path: "/opt/oneshot-tool"} if role == "agent" else {})
        )
        for role in ("agent", "score")
    )  # fmt: skip
    for sandbox in (agent, scoring):
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        assert sandbox.container is None
    changed = agent.exec(["sh", "-c", "echo mine > /usr/local/lib/agent.txt && /opt/oneshot-tool/tool"])
    assert changed.stdout == b"tool\n", changed.text()
    assert agent.exec(["cat", "/usr/local/lib/agent.txt"]).stdout == b"mine\n", "kept from one command to the next"
    assert agent.exec(["sh", "-c", "echo x > /opt/oneshot-tool/tool"]).returncode != 0, "mounts are read-only"
    assert scoring.exec(["test", "-e", "/usr/local/lib/agent.txt"]).returncode != 0, "the image is unchanged"
    assert scoring.exec(["sh", "-c", "echo x > /usr/local/lib/agent.txt"]).returncode != 0, "read-only system"


def test_what_a_tree_writes_in_its_workspace_never_reaches_the_next_one(
    docker_task: DockerTask, request: pytest.FixtureRequest
) -> None:
    """The workspace is the image's, copied once into the cache and mounted under each tree's own upper
    dir: an agent that edits, deletes, chmods and hard-links its files leaves the copy as it was."""
    task, snap = docker_task()

    def started(role: str) -> ImageTreeSandbox:
        spec = SandboxSpec(task=task, repo_snapshot=snap, trial_id=f"tree-{role}", run_id="t", scoring=role == "score")
        sandbox = ImageTreeSandbox(spec)
        request.addfinalizer(sandbox.stop)
        sandbox.start()
        assert sandbox.container is None
        return sandbox

    agent = started("agent")
    before = agent.read_file("calc.py")
    attack = "echo pwned > calc.py && rm -r pkg && chmod 777 . && ln .git/HEAD head && echo new > new.txt"
    attacked = agent.exec(["sh", "-c", attack])
    assert attacked.ok, attacked.text()
    agent.write_file("written.txt", b"by the harness\n")
    for sandbox in (started("score"), started("agent-2")):
        seen = sandbox.exec(["sh", "-c", "ls -a; stat -c %a ."]).stdout.decode().split()
        assert "pkg" in seen and "new.txt" not in seen and "head" not in seen and "written.txt" not in seen
        assert seen[-1] != "777" and sandbox.read_file("calc.py") == before


def test_a_fresh_tree_is_read_once_per_image(
    tree: Callable[..., ImageTreeSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tree of an image starts as its workspace copy, so its digests are read once; a tree the
    harness wrote to is read again."""
    first = tree()
    read = fresh_manifest(first)
    assert "calc.py" in read and first.start_key() is not None
    again = ImageTreeSandbox(first.spec)
    again.start()
    try:
        assert again.start_key() == first.start_key()
        with monkeypatch.context() as patched:
            patched.setattr(again, "archive_workspace", lambda **_: pytest.fail("read again"))
            patched.setattr("pytest_oneshot.workspace.read_host_dir", lambda *_, **__: pytest.fail("read again"))
            assert fresh_manifest(again) == read
        again.write_file("calc.py", b"changed\n")
        with again.archive_workspace() as archive:
            assert read_archive(archive).files["calc.py"] != read["calc.py"], "the copy is shared, not the tree"
    finally:
        again.stop()


def test_the_agents_change_is_read_from_what_it_wrote(tree: Callable[..., ImageTreeSandbox]) -> None:
    """An agent's tree is read from its workspace's upper dir, not from the whole workspace: the tree
    read is the one an archive of the whole workspace gives, for every kind of edit overlayfs records
    (whiteouts, opaque dirs, copy-ups, a dir replaced by a file and back, a moved dir, odd files)."""
    scoring = tree(files=EDITED_FILES)
    with scoring.archive_workspace() as archive:
        fresh = read_archive(archive).files
    layers = scoring.host_files()
    assert layers is not None and read_host_dir(layers.root).files == fresh
    agent = ImageTreeSandbox(dataclasses.replace(scoring.spec, scoring=False, trial_id="layered-agent"))
    agent.start()
    try:
        renamed = agent.exec(["python3", "-c", "import os; os.rename('moved_dir', 'x')"])
        assert "Invalid cross-device link" in renamed.text(), "no redirects: a lower dir cannot be renamed"
        edited = agent.exec(["sh", "-c", AGENT_EDITS])
        assert edited.ok, edited.text()
        layers = agent.host_files(stop_processes=True)
        assert layers is not None
        via_upper = read_upper(layers.upper, fresh, max_file_bytes=2000)
        with agent.archive_workspace() as archive:
            via_archive = read_archive(archive, baseline=fresh, max_file_bytes=2000)
        assert via_upper.files == via_archive.files
        assert via_upper.left_out == via_archive.left_out
        assert_the_edits_are_the_change(compute_change(fresh, via_upper))
        linked = agent.exec(["ln", "keep.txt", "hard.txt"])  # an archive cannot give its content: read here
        assert linked.ok, linked.text()
        layers = agent.host_files(stop_processes=True)
        assert layers is not None
        assert read_upper(layers.upper, fresh).files["hard.txt"].data == b"keep.txt\n"
    finally:
        agent.stop()


def test_a_tree_nested_deeper_than_python_recurses_is_removed(tree: Callable[..., ImageTreeSandbox]) -> None:
    """The code in a tree can nest dirs deeper than Python's recursion limit (shutil.rmtree's): the
    tree is removed all the same, never a RecursionError out of the trial (a harness error)."""
    sandbox = tree()
    layers = sandbox.host_files()
    assert layers is not None
    nest = "import os\nos.mkdir('out'); os.chdir('out')\nfor _ in range(5000):\n    os.mkdir('d'); os.chdir('d')"
    nested = sandbox.exec(["python3", "-c", nest])
    assert nested.ok, nested.text()
    sandbox.stop()
    assert not layers.upper.parent.exists()


def test_a_dead_runs_tree_is_reaped_even_when_the_engine_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Only this tree is dead (its owner ran in another boot of this host): the live trees of runs
    beside this test, which the reaper must leave alone, stay as they are."""
    left = Path(tempfile.mkdtemp(prefix="oneshot-tree-"))
    request.addfinalizer(lambda: shutil.rmtree(left, ignore_errors=True))
    (left / "workspace").mkdir()
    dead = Owner(socket.gethostname(), "another-boot", os.getpid(), "0")
    (left / OWNER_FILE).write_text(json.dumps(dead.labels()))
    assert Owner.of(left) == dead and dead.is_dead()
    alive = Path(tempfile.mkdtemp(prefix="oneshot-tree-"))
    request.addfinalizer(lambda: shutil.rmtree(alive, ignore_errors=True))
    Owner.claim(alive)

    def unreachable(options: object) -> list[str]:
        raise SandboxUnavailableError("no engine at unix:///nowhere")

    monkeypatch.setattr(DockerSandbox, "cleanup_stale", staticmethod(unreachable))
    with pytest.raises(SandboxUnavailableError):
        DockerFactory.cleanup_stale({"cache_dir": str(tmp_path)})
    assert not left.exists(), "the trees need no engine"
    assert alive.exists(), "a live run's tree is not litter"


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
        assert sandbox.start_key() is None, "a container's workspace is its own"
        sandbox.write_file("calc.py", b"x = 1\n")
        assert sandbox.exec(["cat", "calc.py"]).stdout == b"x = 1\n"
    finally:
        sandbox.stop()
