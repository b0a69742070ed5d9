"""Reaping: the containers of runs that died (SIGKILL, a crash) are found by their owner labels
and removed at the next session, with the exec server's socket dir each one had on the host."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import docker.errors

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
    One that is gone by the time it is removed (its own run, or another session's reaper, was first)
    is simply gone.
    """
    engine = engine or ensure_engine()
    listed = engine.api.containers(all=True, filters={"label": f"{LABEL}.owner.pid"})
    dead = []
    for container in listed:
        labels = {str(key): str(value) for key, value in (container.get("Labels") or {}).items()}
        owner = Owner.from_labels(labels)
        if owner is None or not owner.is_dead():
            continue
        with contextlib.suppress(docker.errors.NotFound):
            engine.api.remove_container(container["Id"], v=True, force=True)
            dead.append(str(container["Id"]))
        home = Path(labels.get(SERVER_HOME_LABEL, "/nonexistent"))
        if home.name.startswith(SERVER_HOME_PREFIX) and home.is_dir() and not home.is_symlink():
            shutil.rmtree(home, ignore_errors=True)
    return dead
