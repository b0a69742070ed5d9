"""DockerSandbox on a real engine: image hygiene, build-once, reaping, its read-only scoring system
(the Sandbox contract itself, on both exec paths, is tests/contract/test_sandbox_contract.py)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_oneshot.errors import InfraError, SandboxUnavailableError
from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.docker import DockerSandbox
from pytest_oneshot.sandbox.docker_image import builds_log, environment_image
from pytest_oneshot.sandbox.docker_reap import reap
from pytest_oneshot.sandbox.dockerd import BASE_IMAGE, Engine
from pytest_oneshot.task import Task

pytestmark = pytest.mark.docker

REPO_ROOT = Path(__file__).resolve().parents[2]
CANARY = "sk-oneshot-canary-7f3a9c2e"  # the same fake secret the docker_task fixture plants in hidden files
DockerTask = Callable[..., tuple[Task, Path]]
MakeSandbox = Callable[..., DockerSandbox]


def sh(sandbox: DockerSandbox, script: str, **kwargs: object) -> str:
    result = sandbox.exec(["sh", "-c", script], timeout=60, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, result.text()
    return result.stdout.decode()


# --- exec ---------------------------------------------------------------------------------


def test_exec_has_the_local_sandboxs_base_environment(any_sandbox: MakeSandbox) -> None:
    sandbox = any_sandbox()
    env = sh(sandbox, "env")
    assert "ONESHOT_IN_SANDBOX=1\n" in env and "LANG=C.UTF-8\n" in env
    assert b"\nPWD=/tmp\n" in sandbox.exec(["env"], cwd="/tmp", timeout=60).stdout


def test_exec_in_missing_container_is_infra_error(any_sandbox: MakeSandbox) -> None:
    sandbox = any_sandbox()
    sandbox.stop()
    with pytest.raises(InfraError, match="is not running"):
        sandbox.exec(["true"], timeout=60)


# --- files --------------------------------------------------------------------------------


# --- isolation and limits -----------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


_FETCH = (
    "import sys, urllib.request; print(urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/', timeout=5).status)"
)


def test_a_scoring_container_with_tests_setup_has_a_read_only_system(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(task_kwargs={"tests_setup": ["true"]}, scoring=True)
    result = sandbox.exec(["sh", "-c", "echo evil > /usr/bin/git"], timeout=60)
    assert result.returncode != 0 and b"Read-only file system" in result.stderr
    assert sh(sandbox, "touch new.txt ~/h /tmp/t && git status --porcelain") == "?? new.txt\n"


def test_the_agents_container_may_change_its_own_system(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox()  # nothing of it but the repo's files is ever scored
    assert sh(sandbox, "echo tool > /usr/local/bin/mytool && cat /usr/local/bin/mytool") == "tool\n"


def test_labels_and_stop_is_idempotent(make_sandbox: MakeSandbox, engine: Engine) -> None:
    sandbox = make_sandbox()
    labels = engine.api.inspect_container(sandbox.name)["Config"]["Labels"]
    assert labels["oneshot.run_id"] == "test-run" and labels["oneshot.owner.pid"] == str(os.getpid())
    sandbox.stop()
    sandbox.stop()
    with pytest.raises(docker.errors.NotFound):
        engine.api.inspect_container(sandbox.name)


# --- images -------------------------------------------------------------------------------


def test_image_holds_nothing_of_the_answer(
    docker_task: DockerTask, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)  # a key in the host env must not reach any layer
    task, snap = docker_task("leak", setup=["echo setup-ran > .setup-marker"])
    tag = environment_image(engine, task, snap, cache_dir=tmp_path / "cache")
    history = json.dumps(engine.api.history(tag))
    assert CANARY not in history and "setup-ran" in history
    saved = tmp_path / "image.tar"
    with open(saved, "wb") as file:
        for chunk in engine.api.get_image(tag):
            file.write(chunk)
    names: list[str] = []
    with tarfile.open(saved) as outer:
        for member in outer:
            data = outer.extractfile(member)
            blob = data.read() if data else b""
            assert CANARY.encode() not in blob, f"canary found in {member.name}"
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    names += layer.getnames()
    assert "workspace/calc.py" in names and "workspace/.setup-marker" in names
    for hidden in ("diff.patch", "notes.md", "tb_meta.json", "repo.bundle", "test_calc.py"):
        assert not any(name.endswith(hidden) for name in names), hidden
    # the answer commit is not reachable in the image either
    sandbox = DockerSandbox(
        SandboxSpec(task=task, repo_snapshot=snap, trial_id="leak-git", run_id="test-run"), cache_dir=tmp_path / "cache"
    )
    try:
        sandbox.start()
        result = sandbox.exec(["git", "cat-file", "-e", task.spec.repo.end_commit_sha], timeout=60)
        assert result.returncode != 0
        assert sh(sandbox, "git rev-list --all --count") == "1\n"
    finally:
        sandbox.stop()


def test_same_environment_shares_one_image_and_never_rebuilds(
    docker_task: DockerTask, engine: Engine, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, snap_first = docker_task("one")
    second, snap_second = docker_task("two")  # other task dir, same repo and environment
    tag = environment_image(engine, first, snap_first, cache_dir=cache)
    assert environment_image(engine, second, snap_second, cache_dir=cache) == tag
    assert environment_image(engine, first, snap_first, cache_dir=cache) == tag
    assert not builds_log(cache).exists() or len(builds_log(cache).read_text().splitlines()) <= 1
    third, snap_third = docker_task("three", setup=["true"])
    assert environment_image(engine, third, snap_third, cache_dir=cache) != tag


_BUILD = """
import sys
from pathlib import Path
from pytest_oneshot.task import load_task
from pytest_oneshot.sandbox.docker_image import environment_image
from pytest_oneshot.sandbox.dockerd import ensure_engine
print(environment_image(ensure_engine(), load_task(Path(sys.argv[1])), Path(sys.argv[2]), cache_dir=Path(sys.argv[3])))
"""


def test_concurrent_processes_build_an_image_once(docker_task: DockerTask, engine: Engine, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    task, snap = docker_task("once", setup=[f"echo {tmp_path.name} > .unique"])  # a tag no earlier run built
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, "-c", _BUILD, str(task.paths.root), str(snap), str(cache)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err.decode() for _, err in outputs]
    tags = {out.decode().strip() for out, _ in outputs}
    assert len(tags) == 1
    (tag,) = tags
    try:
        builds = [line for line in builds_log(cache).read_text().splitlines() if f"\t{tag}\t" in line]
        assert len(builds) == 1
    finally:
        engine.api.remove_image(tag)


def test_failing_setup_is_infra_error_with_output(docker_task: DockerTask, engine: Engine, tmp_path: Path) -> None:
    task, snap = docker_task("broken", setup=["echo no-such-dep >&2; exit 7"])
    with pytest.raises(InfraError, match=r"setup: building the docker image for task broken failed: .*no-such-dep"):
        environment_image(engine, task, snap, cache_dir=tmp_path / "cache")


def test_task_dockerfile_and_missing_base_image(docker_task: DockerTask, engine: Engine, tmp_path: Path) -> None:
    task, snap = docker_task("own", dockerfile="FROM oneshot-base:bookworm\nRUN echo from-task > /etc/marker\n")
    sandbox = DockerSandbox(
        SandboxSpec(task=task, repo_snapshot=snap, trial_id="own-df", run_id="test-run"), cache_dir=tmp_path / "cache"
    )
    try:
        sandbox.start()
        assert sh(sandbox, "cat /etc/marker; git log --format=%s") == "from-task\nstart\n"
    finally:
        sandbox.stop()
    task, snap = docker_task("nobase")
    with pytest.raises(SandboxUnavailableError, match=r"docker image example\.invalid/none:1 not found"):
        environment_image(engine, task, snap, base_image="example.invalid/none:1", cache_dir=tmp_path / "cache")


# --- reaping ------------------------------------------------------------------------------

_HOLD = """
import sys
from pathlib import Path
from pytest_oneshot.task import load_task
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.docker import DockerSandbox
task = load_task(Path(sys.argv[1]))
spec = SandboxSpec(task=task, repo_snapshot=Path(sys.argv[2]), trial_id=sys.argv[3], run_id="reap-run")
sandbox = DockerSandbox(spec)
sandbox.start()
print(sandbox.name, flush=True)
sandbox.exec(["sleep", "300"])
"""


def test_reap_removes_containers_of_a_killed_owner(docker_task: DockerTask, engine: Engine, tmp_path: Path) -> None:
    task, snap = docker_task("reap")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    owner = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(task.paths.root), str(snap), f"reap-{tmp_path.name}"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    name = owner.stdout.readline().strip()
    assert name, "the owner process did not start its sandbox"
    assert name not in reap(engine)  # alive: left alone
    assert engine.api.inspect_container(name)["State"]["Running"]
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    inspected = engine.api.inspect_container(name)
    container_id, server_home = inspected["Id"], inspected["Config"]["Labels"]["oneshot.execd.home"]
    assert (Path(server_home) / "run" / "sock").is_socket()
    assert container_id in reap(engine)
    assert engine.api.containers(all=True, filters={"label": "oneshot.run_id=reap-run"}) == []
    assert not Path(server_home).exists()  # the exec server's socket dir goes with its container


class _RacingAPI:
    """The real engine's client, listing only this test's containers, where ``victim`` is removed right
    after the reaper's list, as another session's reaper (or the victim's own run) may do."""

    def __init__(self, engine: Engine, victim: str) -> None:
        self._api, self._victim = engine.api, victim

    def containers(self, **kwargs: Any) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._api.containers(all=True, filters={"label": "oneshot.run_id=vanish-run"})
        self._api.remove_container(self._victim, force=True)
        return listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def test_reap_survives_containers_that_vanish_between_list_and_remove(engine: Engine) -> None:
    me = Owner.current()
    dead = Owner(me.host, me.boot, me.pid, "1")  # our pid, another start time: a dead run
    labels = {**dead.labels(), "oneshot.run_id": "vanish-run"}

    def create() -> str:
        return str(engine.api.create_container(BASE_IMAGE, "true", labels=labels)["Id"])

    only = create()  # the only listed container is gone when the reaper removes it
    assert reap(Engine(engine.host, _RacingAPI(engine, only))) == []  # type: ignore[arg-type]
    vanished, litter = create(), create()  # one gone, one left to reap
    assert reap(Engine(engine.host, _RacingAPI(engine, vanished))) == [litter]  # type: ignore[arg-type]
    assert engine.api.containers(all=True, filters={"label": "oneshot.run_id=vanish-run"}) == []


def test_owner_detection() -> None:
    me = Owner.current()
    assert not me.is_dead()
    assert Owner(me.host, me.boot, me.pid, "1").is_dead()  # same pid, other process (pid reuse)
    assert Owner(me.host, "another-boot", me.pid, me.started).is_dead()
    assert not Owner("another-host", "x", 1, "1").is_dead()  # not ours to judge
    assert Owner.from_labels(me.labels()) == me and Owner.from_labels({}) is None


def test_oneshot_docker_cli(engine: Engine) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = textwrap.dedent(
        """
        import argparse, sys
        from pytest_oneshot.sandbox import dockerd
        parser = argparse.ArgumentParser(prog="oneshot")
        dockerd.add_commands(parser.add_subparsers(dest="group", required=True))
        args = parser.parse_args(sys.argv[1:])
        sys.exit(args.func(args))
        """
    )
    engine_out = subprocess.run(
        [sys.executable, "-c", code, "docker", "engine"], env=env, capture_output=True, text=True, check=True
    )
    assert "docker engine " in engine_out.stdout
    base_out = subprocess.run(
        [sys.executable, "-c", code, "docker", "base"], env=env, capture_output=True, text=True, check=True
    )
    assert base_out.stdout.startswith("oneshot-base:bookworm sha256:")


def test_missing_subdir_is_infra_error(docker_task: DockerTask, engine: Engine, tmp_path: Path) -> None:
    task, snap = docker_task("nosub", subdir="nope")
    with pytest.raises(InfraError, match=r"tb_meta.json: repo.subdir 'nope' is not a directory at the start commit"):
        environment_image(engine, task, snap, cache_dir=tmp_path / "cache")


def _ticks(sandbox: DockerSandbox) -> str:
    return sandbox.read_file("tick").decode()
