"""The real Codex CLI inside a container: it replays the task's cassette over ``--network host``
to the loopback model server, and the hidden tests pass; the key never enters the container."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.sandbox.dockerd import Engine

pytestmark = [pytest.mark.docker, pytest.mark.codex]

CANARY = "sk-canary-docker-codex-0042"

# A conftest for the run, looking for the key in each container of this process (found by owner
# label) with the docker CLI. While the agent works: a watcher in the agent's container greps every
# process's environment and every file written since the container started, a few times a second
# (codex's CODEX_HOME, say, is removed when it stops). Once the agent is done, before the
# containers are removed: the container's configuration (env, command, labels, mounts), its image
# (config and history), the paths it changed, and every file it can see (image layers, its own
# layer, tmpfs, mounts). Only a part of the key is passed to the watcher, so the whole key never
# enters the container through the probe.
PROBE = """\
import datetime
import json
import os
import subprocess

_WATCH = (
    'while [ ! -e /tmp/.watch-stop ]; do '
    'grep -lsF -- "$1" /proc/[0-9]*/environ; '
    'find / \\\\( -path /proc -o -path /sys \\\\) -prune -o -type f -newermt "@$2" -print0 '
    '| xargs -0r grep -lsF -- "$1"; sleep 0.2; done; echo watched'
)
_watchers = {}


def _docker(*args, check=True):
    argv = ["docker", "--host", os.environ["PROBE_DOCKER_HOST"], *args]
    return subprocess.run(argv, capture_output=True, check=check).stdout


def _containers():
    owner = f"label=oneshot.owner.pid={os.getpid()}"
    for container in _docker("ps", "-q", "--no-trunc", "--filter", owner).decode().split():
        yield container, json.loads(_docker("inspect", container))[0]


def _report(probe):
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(json.dumps(probe) + "\\n")


def pytest_oneshot_phase(item, phase, duration):
    key = os.environ["OPENAI_API_KEY"]
    if phase == "sandbox":  # the agent starts next
        for container, config in _containers():
            if not config["Config"]["Labels"]["oneshot.trial"].endswith("-score"):
                argv = ["docker", "--host", os.environ["PROBE_DOCKER_HOST"], "exec", container, "sh", "-c", _WATCH]
                started = datetime.datetime.fromisoformat(config["State"]["StartedAt"][:19] + "+00:00")
                since = str(int(started.timestamp()) - 1)  # every file written since the container started
                _watchers[container] = subprocess.Popen([*argv, "sh", key[3:-2], since], stdout=subprocess.PIPE)
    if phase != "agent":
        return
    for container, watcher in _watchers.items():
        _docker("exec", container, "touch", "/tmp/.watch-stop")
        _report({"watched": watcher.communicate()[0].decode().split()})
    for container, config in _containers():
        inspect = _docker("inspect", container)
        image = _docker("image", "inspect", config["Image"]) + _docker("history", "--no-trunc", config["Image"])
        changed = _docker("diff", container).decode()
        grep = ["grep", "-rlsF", "-D", "skip", "--exclude-dir=proc", "--exclude-dir=sys", "--", key, "/"]
        files = _docker("exec", container, *grep, check=False).decode().split()
        _report({"trial": config["Config"]["Labels"]["oneshot.trial"], "env": config["Config"]["Env"],
                 "in_config": key.encode() in inspect, "in_image": key.encode() in image,
                 "changed": len(changed.splitlines()), "in_changed_paths": key in changed, "files_with_key": files})
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
    found = [json.loads(line) for line in probes.read_text().splitlines()]
    assert [probe["watched"] for probe in found if "watched" in probe] == [["watched"]], found  # found nothing
    containers = [probe for probe in found if "trial" in probe]
    agents = [probe for probe in containers if not probe["trial"].endswith("-score")]
    assert len(agents) == 1 and agents[0]["changed"] > 0, found  # the agent's container, after its work
    for probe in containers:
        assert "ONESHOT_IN_SANDBOX=1" in probe["env"], probe  # the container's own env was read
        leaks = {name: value for name, value in probe.items() if name.startswith("in_") and value}
        assert not leaks and probe["files_with_key"] == [], probe
