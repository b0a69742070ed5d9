"""Reaping: the containers of runs that died (SIGKILL, a crash) are found by their owner labels
and removed at the next session, with the exec server's socket dir each one had on the host."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pytest_oneshot.owner import Owner
from pytest_oneshot.sandbox.dockerd import Engine, ensure_engine

LABEL = "oneshot"
"""Prefix of every label the docker sandbox puts on its containers and images."""
SERVER_HOME_PREFIX = "oneshot-execd-"
SERVER_HOME_LABEL = f"{LABEL}.execd.home"
"""The host dir of a container's exec server socket, removed with the container."""


def reap(engine: Engine | None = None) -> list[str]:
    """Remove the containers whose owner process is dead (a SIGKILLed or crashed run); return their ids.

    Called at session start; containers of live runs, other hosts, or without owner labels are left alone.
    """
    engine = engine or ensure_engine()
    ids = engine.run("ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}.owner.pid").stdout.decode().split()
    if not ids:
        return []
    inspected = engine.run(
        "inspect", "--type", "container", "--format", "{{.Id}} {{json .Config.Labels}}", *ids, check=False
    )
    dead, homes = [], []
    for container, labels in _labels_by_container(inspected.stdout.decode("utf-8", "replace")).items():
        owner = Owner.from_labels(labels)
        if owner is not None and owner.is_dead():
            dead.append(container)
            homes.append(Path(labels.get(SERVER_HOME_LABEL, "/nonexistent")))
    if dead:
        engine.run("rm", "-f", "-v", *dead, check=False)
    for home in homes:
        if home.name.startswith(SERVER_HOME_PREFIX) and home.is_dir() and not home.is_symlink():
            shutil.rmtree(home, ignore_errors=True)
    return dead


def _labels_by_container(inspect_output: str) -> dict[str, dict[str, str]]:
    """Parse ``{{.Id}} {{json .Config.Labels}}`` lines. A container removed since it was listed (by its
    own run, or another session's reaper) prints an empty line and an error: it is simply gone."""
    found: dict[str, dict[str, str]] = {}
    for line in inspect_output.splitlines():
        container, _, text = line.strip().partition(" ")
        try:
            labels = json.loads(text) if container else None
        except ValueError:
            continue
        if isinstance(labels, dict):
            found[container] = {str(key): str(value) for key, value in labels.items()}
    return found
