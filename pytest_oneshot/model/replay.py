"""Replay mode: ``--oneshot-model=replay`` feeds each task's recorded cassette to the real agent.

A cassette (``<task>/cassettes/<name>.json``, see :mod:`pytest_oneshot.model.cassette`) holds the
model's side of a recorded session. One scripted Responses-API server per process serves
every trial; each trial registers its cassette under its own key and gets its own base
URL, so concurrent trials never share a script. ``replay`` plays ``cassettes/replay.json``,
``replay:NAME`` plays ``cassettes/NAME.json``. No API key, no network, deterministic.

A replayed *judge* (``--oneshot-judge-model=replay``) is served the same way, from
``cassettes/judge/<agent cassette>.json`` (:class:`~pytest_oneshot.model.cassette.JudgeCassette`): each
rubric's recorded answer under the trial's own key, only for the very diff it judged.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_oneshot.errors import InfraError, TaskFormatError
from pytest_oneshot.task import Task

if TYPE_CHECKING:
    from pytest_oneshot.model.cassette import Cassette, Turn
    from pytest_oneshot.model.scripted import ScriptedResponsesServer

REPLAY_MODEL = "replay"


def judge_cassette(task: Task, judge_model: str | None, agent_model: str | None) -> Path | None:
    """The judge cassette a replayed judge plays (it may not exist); None when ``judge_model`` is no replay.

    ``replay`` plays the answers recorded for the agent's own cassette (``replay`` when the agent is
    no replay), ``replay:NAME`` those of ``cassettes/judge/NAME.json``.
    """
    name = cassette_name(judge_model)
    if name is None:
        return None
    if judge_model == REPLAY_MODEL:
        name = cassette_name(agent_model) or REPLAY_MODEL
    return task.paths.cassettes_dir / "judge" / f"{name}.json"


def recorded_judge_model(task: Task, agent_model: str | None) -> str | None:
    """The judge model when none is given: ``replay`` for a replayed agent whose task recorded judge
    answers for its cassette, else None (the rubrics no test scores stay unscored)."""
    if cassette_name(agent_model) is None:
        return None
    recorded = judge_cassette(task, REPLAY_MODEL, agent_model)
    return REPLAY_MODEL if recorded is not None and recorded.is_file() else None


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
        path = self.cassette(task, model)
        if path is None:
            return None
        from pytest_oneshot.model.cassette import load_cassette

        return self._serve(key, load_cassette(path))

    @staticmethod
    def cassette(task: Task, model: str | None) -> Path | None:
        """The cassette file ``task`` replays for ``model``, checked; None when ``model`` is not a replay
        (a remote gateway serves it itself: :attr:`ModelGateway.remote`).

        Raises:
            InfraError: the cassette is missing or malformed (phase ``prepare``).
        """
        name = cassette_name(model)
        if name is None:
            return None
        from pytest_oneshot.model.cassette import load_cassette  # only replay runs pay for them (pydantic, aiohttp)

        path = task.paths.cassettes_dir / f"{name}.json"
        if not path.is_file():
            raise InfraError("prepare", f"{path}: no cassette to replay for --oneshot-model={model}")
        try:
            load_cassette(path)
        except TaskFormatError as exc:
            raise InfraError("prepare", str(exc)) from None
        return path

    def judge_endpoint(self, path: Path, rubric_id: str, diff_sha256: str, key: str) -> str:
        """Base URL serving the answer recorded in judge cassette ``path`` for ``rubric_id``.

        Raises:
            InfraError: (phase ``judge``) no such cassette or rubric, a malformed cassette, or an
                answer recorded for another diff: a replayed judgement never scores a diff it did not see.
        """
        from pytest_oneshot.model.cassette import load_judge_cassette

        if not path.is_file():
            raise InfraError("judge", f"{path}: no judge cassette to replay (--oneshot-judge-model=replay)")
        try:
            cassette = load_judge_cassette(path)
        except TaskFormatError as exc:
            raise InfraError("judge", str(exc)) from None
        answer = cassette.rubrics.get(rubric_id)
        if answer is None:
            raise InfraError("judge", f"{path}: rubrics.{rubric_id}: no recorded answer for this rubric")
        if answer.diff_sha256 != diff_sha256:
            raise InfraError(
                "judge",
                f"{path}: rubrics.{rubric_id}.diff_sha256: recorded for another diff ({answer.diff_sha256[:12]}…, "
                f"this attempt's is {diff_sha256[:12]}…); judge it with --oneshot-judge-model=MODEL",
            )
        return self._serve(key, answer.turns)

    def _serve(self, key: str, script: Cassette | Sequence[Turn]) -> str:
        from pytest_oneshot.model.scripted import ScriptedResponsesServer

        with self._lock:
            if self._server is None:
                self._server = ScriptedResponsesServer().start()
            return self._server.add_script(key, script)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
