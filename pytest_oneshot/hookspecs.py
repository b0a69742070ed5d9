"""Hooks pytest-oneshot adds; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_oneshot.result import TrialResult
    from pytest_oneshot.stash import Registries


def pytest_oneshot_register(registries: Registries) -> None:
    """Register extra sandboxes, agents or judges, e.g.
    ``registries.agent.register("mine", "my_pkg.agent:MyAgent")``.

    Called once per session before any name is looked up.

    :param registries: the session's ``sandbox``, ``agent`` and ``judge`` registries.

    Use in conftest plugins: yes (the root conftest.py).
    """


def pytest_oneshot_phase(item: pytest.Item, phase: str, duration: float) -> None:
    """A trial phase (prepare, sandbox, agent, diff, tests, score, and judge when a judge scores a
    rubric no test scores) of ``item`` ended.

    Called as it happens, from the thread running the trial: trials run in threads, the next
    items' sandboxes start ahead of their turn, and with ``--oneshot-concurrency`` several trials
    run at once, so the phases of different items may interleave. The phases of one item come in
    order, all before its ``pytest_oneshot_trial_result``.

    :param item: the task item running the trial.
    :param phase: the phase name.
    :param duration: seconds the phase took.

    Use in conftest plugins: yes.
    """


def pytest_oneshot_trial_result(item: pytest.Item, result: TrialResult) -> None:
    """The trial of ``item`` finished (on the worker that ran it); ``result`` is final.

    :param item: the task item.
    :param result: outcome, scores, test statuses, phases, run dir.

    Use in conftest plugins: yes.
    """
