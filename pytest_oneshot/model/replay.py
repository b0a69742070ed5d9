"""Replay mode: ``--oneshot-model=replay`` feeds each task's recorded cassette to the real agent.

A cassette (``<task>/cassettes/<name>.json``, see :mod:`pytest_oneshot.model.cassette`) holds the
model's side of a recorded session. One scripted Responses-API server per process serves
every trial; each trial registers its cassette under its own key and gets its own base
URL, so concurrent trials never share a script. ``replay`` plays ``cassettes/replay.json``,
``replay:NAME`` plays ``cassettes/NAME.json``. No API key, no network, deterministic.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pytest_oneshot.errors import InfraError, TaskFormatError
from pytest_oneshot.task import Task

if TYPE_CHECKING:
    from pytest_oneshot.model.scripted import ScriptedResponsesServer

REPLAY_MODEL = "replay"


def cassette_name(model: str | None) -> str | None:
    """``replay`` -> ``replay``, ``replay:NAME`` -> ``NAME``, any other model -> None."""
    if model == REPLAY_MODEL:
        return REPLAY_MODEL
    if model and model.startswith(REPLAY_MODEL + ":"):
        return model.split(":", 1)[1]
    return None


class ReplayService:
    """Lazily started scripted server shared by the trials of one process."""

    def __init__(self) -> None:
        self._server: ScriptedResponsesServer | None = None
        self._lock = threading.Lock()

    def endpoint(self, task: Task, model: str | None, key: str) -> str | None:
        """Base URL replaying ``task``'s cassette for ``model``; None when ``model`` is not a replay.

        Raises:
            InfraError: the cassette is missing or malformed (phase ``prepare``).
        """
        name = cassette_name(model)
        if name is None:
            return None
        from pytest_oneshot.model.cassette import load_cassette  # only replay runs pay for them (pydantic, aiohttp)
        from pytest_oneshot.model.scripted import ScriptedResponsesServer

        path = task.paths.cassettes_dir / f"{name}.json"
        if not path.is_file():
            raise InfraError("prepare", f"{path}: no cassette to replay for --oneshot-model={model}")
        try:
            cassette = load_cassette(path)
        except TaskFormatError as exc:
            raise InfraError("prepare", str(exc)) from None
        with self._lock:
            if self._server is None:
                self._server = ScriptedResponsesServer().start()
            return self._server.add_script(key, cassette)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
