"""Typed keys for what the plugin keeps in ``config.stash`` and ``item.stash``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the plugin imports this module in every process, a sandbox's test run included
    from pytest_oneshot.agent import Agent, AgentFactory
    from pytest_oneshot.judge import Judge, JudgeFactory
    from pytest_oneshot.model.gateway import ModelGateway
    from pytest_oneshot.model.replay import ReplayService
    from pytest_oneshot.overrides import OverridesFile
    from pytest_oneshot.registry import Registry
    from pytest_oneshot.result import TrialResult
    from pytest_oneshot.sandbox import SandboxFactory
    from pytest_oneshot.settings import OneshotSettings


@dataclass(frozen=True)
class Registries:
    """The session's extension registries (per Config, so in-process pytester runs stay isolated)."""

    sandbox: Registry[SandboxFactory]
    agent: Registry[AgentFactory]
    judge: Registry[JudgeFactory]


settings_key: pytest.StashKey[OneshotSettings] = pytest.StashKey()
registries_key: pytest.StashKey[Registries] = pytest.StashKey()
replay_key: pytest.StashKey[ReplayService] = pytest.StashKey()
gateway_key: pytest.StashKey[ModelGateway] = pytest.StashKey()
"""Every trial's route to its model (servers start on the first route)."""
agent_options_key: pytest.StashKey[dict[str, str]] = pytest.StashKey()
"""The agent's options with what its factory finds once per session (xdist workers get the controller's)."""
agent_key: pytest.StashKey[Agent] = pytest.StashKey()
"""The session's agent, built on first use (agents hold configuration, not trial state)."""
judge_key: pytest.StashKey[Judge] = pytest.StashKey()
"""The session's judge, built on first use."""
trial_key: pytest.StashKey[TrialResult] = pytest.StashKey()
overrides_key: pytest.StashKey[OverridesFile | None] = pytest.StashKey()
"""The run's overrides file (``--oneshot-overrides``), read once; applied to each task at collection."""
dataset_key: pytest.StashKey[dict[str, str]] = pytest.StashKey()
"""With ``--oneshot-hf``: the dataset, its resolved revision sha and its local copy (pinned in report.json)."""
