"""The real Codex CLI in a docker sandbox (a tree of the task image's layers, on the host's network as
``--network host``): it replays the task's cassette to the loopback model gateway, and the hidden
tests pass; the key never enters the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = [pytest.mark.docker, pytest.mark.codex]

CANARY = "sk-canary-docker-codex-0042"

# A conftest for the run, looking for the key in every sandbox of this process: the trees of the task
# image's layers (see docker_tree) it owns. While the agent works, a thread scans a few times a second
# every file of each tree's host dirs (workspace, HOME, /tmp, /run, the upper dir of its system: codex's
# CODEX_HOME, say, is removed when it stops) and the environment and command line of every process
# marked as running in one. Once the agent is done: the same scan, and the task image (config and
# history). A container of this process, if any, is reported too (there should be none).
PROBE = """\
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox.process import MARKER

_found = {"trees": set(), "processes": 0, "files_with_key": set(), "procs_with_key": set(), "scans": 0}
_stop = threading.Event()


def _trees():
    found = Path(tempfile.gettempdir()).glob("oneshot-tree-*")
    return [tree for tree in found if (owner := Owner.of(tree)) and owner.pid == os.getpid()]


def _scan(key):
    trees = _trees()
    for tree in trees:
        _found["trees"].add(tree.name)
        for path in tree.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink() and key in path.read_bytes():
                    _found["files_with_key"].add(str(path))
            except OSError:
                pass
    marks = tuple(f"{MARKER}={tree.name}/".encode() for tree in trees)
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\\0")
            if marks and any(var.startswith(marks) for var in env):
                _found["processes"] += 1
                if any(key in var for var in env) or key in (proc / "cmdline").read_bytes():
                    _found["procs_with_key"].add(proc.name)
        except OSError:
            pass
    _found["scans"] += 1


def _watch(key):
    while not _stop.wait(0.2):
        _scan(key)


def _docker(*args):
    argv = ["docker", "--host", os.environ["PROBE_DOCKER_HOST"], *args]
    return subprocess.run(argv, capture_output=True, check=True).stdout


def pytest_oneshot_phase(item, phase, duration):
    key = os.environ["OPENAI_API_KEY"].encode()
    if phase == "sandbox":  # the agent starts next
        threading.Thread(target=_watch, args=(key,), daemon=True).start()
    if phase != "agent":
        return
    _stop.set()
    _scan(key)
    images = _docker("image", "ls", "-q", "--no-trunc", "--filter", "reference=oneshot-env*").decode().split()
    image_text = b"".join(_docker("image", "inspect", i) + _docker("history", "--no-trunc", i) for i in images)
    owner = f"label=oneshot.owner.pid={os.getpid()}"
    containers = _docker("ps", "-aq", "--filter", owner).decode().split()
    report = {k: sorted(v) if isinstance(v, set) else v for k, v in _found.items()}
    report |= {"images": len(images), "in_image": key in image_text, "containers": containers}
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(json.dumps(report) + "\\n")
"""


def test_codex_replay_solves_a_task_in_docker(
    shipped_tasks: Path,
    engine: Engine,
    codex_bin: Path,
    run_and_parse: Callable[..., Any],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = pytester.path / "probes.jsonl"
    (pytester.path / "conftest.py").write_text(PROBE)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("PROBE_DOCKER_HOST", engine.host)
    monkeypatch.setenv("PROBE_OUT", str(probes))
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-sandbox=docker", "--oneshot-agent=codex")
    run.result.assert_outcomes(passed=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["agent"]["status"] == "completed"
    assert item["changed_files"] == ["pager/core.py"]
    events = (Path(item["run_dir"]) / "agent" / "events.jsonl").read_text()
    assert '"type": "file_change"' in events and '"type": "command_execution"' in events
    for path in Path(item["run_dir"]).rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    (probe,) = [json.loads(line) for line in probes.read_text().splitlines()]
    assert probe["trees"] and probe["processes"] > 0 and probe["scans"] > 1, probe  # it watched the agent work
    assert probe["containers"] == [] and probe["images"] > 0, probe  # the agent ran in a tree of the task image
    assert probe["files_with_key"] == [] and probe["procs_with_key"] == [] and not probe["in_image"], probe
