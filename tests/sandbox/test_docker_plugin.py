"""The plugin on ``--oneshot-sandbox=docker``: shipped tasks pass with oracle and fail with nop
(also under xdist), and a SIGKILLed run leaves no process, tree or container once reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox import cgroup
from pytest_oneshot.sandbox.dockerd import Engine
from pytest_oneshot.sandbox.process import MARKER
from tests.polling import as_from_a_terminal

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_tasks(pytester: pytest.Pytester, shipped_tasks: Path, engine: Engine) -> list[str]:
    return sorted(path.name for path in shipped_tasks.iterdir() if (path / "tb_meta.json").is_file())


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_oracle_passes_and_nop_fails(
    docker_tasks: list[str], run_and_parse: Callable[..., Any], workers: list[str]
) -> None:
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=oracle", *workers)
    run.result.assert_outcomes(passed=len(docker_tasks))
    run = run_and_parse("tasks", "--oneshot-sandbox=docker", "--oneshot-agent=nop", *workers)
    run.result.assert_outcomes(failed=len(docker_tasks))
    assert all(item["outcome"] == "failed" for item in run.items().values())


def _containers_of(engine: Engine, pid: int) -> list[str]:
    return [found["Id"] for found in engine.api.containers(all=True, filters={"label": f"oneshot.owner.pid={pid}"})]


def _trees_of(pid: int) -> list[str]:
    """The scoring trees (temp dirs and cgroups) a run's process left (see docker_tree)."""
    dirs = [
        path
        for path in Path(tempfile.gettempdir()).glob("oneshot-tree-*")
        if (owner := Owner.of(path)) and owner.pid == pid
    ]
    groups = [
        path for hierarchy in ("cpu", "memory") for path in (cgroup.V1_ROOT / hierarchy / "oneshot").glob(f"{pid}-*")
    ]
    return [str(path) for path in (*dirs, *groups)]


def _mounts_in(trees: list[str]) -> list[str]:
    """This host's mounts inside those trees (each tree's workspace is an overlay mounted here)."""
    mount_points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in mount_points if any(point.startswith(f"{tree}/") for tree in trees)]


def _sleeps_in_trees(pid: int) -> list[int]:
    """The agent's ``sleep 300`` processes in the trees of run ``pid`` (marked with a tree's name)."""
    marks = tuple(f"{MARKER}={Path(tree).name}/".encode() for tree in _trees_of(pid) if "oneshot-tree-" in tree)
    found = []
    for proc in Path("/proc").iterdir():
        try:
            sleeps = (proc / "cmdline").read_bytes() == b"sleep\x00300\x00"
            if sleeps and any(var.startswith(marks) for var in (proc / "environ").read_bytes().split(b"\x00")):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


def _run_until_agent_starts(pytester: pytest.Pytester, task: str) -> subprocess.Popen[bytes]:
    """A pytest run whose agent sleeps, returned once the sleep runs in its tree of the image (a trial
    also has a scoring tree, started while the agent works)."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"tasks/{task}"]
    argv += ["--oneshot-sandbox=docker", "--oneshot-agent=command", "--oneshot-agent-cmd=sleep 300"]
    run: subprocess.Popen[bytes] = pytester.popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_from_a_terminal
    )
    deadline = time.monotonic() + 300  # a wait for the agent to start, not a timing assertion
    while time.monotonic() < deadline and run.poll() is None:
        if _sleeps_in_trees(run.pid):
            return run
        time.sleep(0.5)
    run.kill()
    pytest.fail("the run never reached its agent phase")


def test_the_next_run_reaps_what_a_sigkilled_run_left(
    pytester: pytest.Pytester, docker_tasks: list[str], engine: Engine
) -> None:
    run = _run_until_agent_starts(pytester, docker_tasks[0])
    run.send_signal(signal.SIGKILL)
    run.wait()
    left = _trees_of(run.pid)
    assert left, "SIGKILL leaves the trees behind (bubblewrap's pid namespace ends their processes)"
    assert _mounts_in(left), "and their workspaces mounted"
    pytester.runpytest_subprocess("--collect-only", "tasks", "--oneshot-sandbox=docker")  # session start reaps
    assert _sleeps_in_trees(run.pid) == [] and _trees_of(run.pid) == [] and _containers_of(engine, run.pid) == []
    assert _mounts_in(left) == []


def test_an_unknown_base_image_is_a_clear_error(docker_tasks: list[str], run_and_parse: Callable[..., Any]) -> None:
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=docker", "--oneshot-agent=nop",
                        "--oneshot-docker-image=oneshot-no-such-image:0")  # fmt: skip
    run.result.assert_outcomes(errors=1)
    assert "oneshot-no-such-image:0" in run.items()["fix-off-by-one[nop-r0]"]["reason"]


def test_ctrl_c_stops_the_agent_and_removes_its_tree(
    pytester: pytest.Pytester, docker_tasks: list[str], engine: Engine
) -> None:
    run = _run_until_agent_starts(pytester, docker_tasks[0])
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) != 0
    assert _sleeps_in_trees(run.pid) == [] and _trees_of(run.pid) == [] and _containers_of(engine, run.pid) == []


_FILL_TMP = "head -c 100M /dev/zero > /tmp/fill"
_FILL_ON_IMPORT = (
    'printf \'import os\\nif not os.path.exists("/tmp/fill"):\\n    os.system("%s")\\n\' '
    "'head -c 100M /dev/zero > /tmp/fill' >> pager/__init__.py"
)


@pytest.mark.parametrize("fill", [_FILL_TMP, _FILL_ON_IMPORT], ids=["agent-phase", "under-the-tests"])
def test_an_agent_that_fills_the_disk_fails_and_leaves_nothing(
    pytester: pytest.Pytester,
    docker_tasks: list[str],
    run_and_parse: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    fill: str,
) -> None:
    """The trees' dirs (their /tmp, the workspace's upper dir) and the run dir share a disk the agent,
    or its code under the tests, fills: its change is still tested and its item fails (not a harness
    error), and no tree or mount is left."""
    if os.geteuid() != 0:
        pytest.skip("mounts a small tmpfs as the disk")
    disk = pytester.path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "oneshot-test-disk", str(disk)], check=True)
    try:
        monkeypatch.setenv("TMPDIR", str(disk))
        run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=docker", "--oneshot-agent=command",
                            f"--oneshot-agent-cmd={fill}; exit 0", f"--oneshot-runs-dir={disk / 'runs'}")  # fmt: skip
        run.result.assert_outcomes(failed=1)
        assert run.items()["fix-off-by-one[command-r0]"]["outcome"] == "failed"
        assert list(disk.glob("oneshot-tree-*")) == [] and _mounts_in([str(disk)]) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)
