"""Collection: a directory holding ``tb_meta.json`` (or a Harbor task) becomes one item per (model x rollout).

The trial runs in the item's *setup*, so a harness failure (repo unreachable, sandbox
error) is a pytest error, and the verdict is checked in the *call*, so an agent that did
not solve the task is a pytest failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_oneshot.agent import Agent, SessionOptions
from pytest_oneshot.concurrency import TrialPool
from pytest_oneshot.errors import OneshotError, TaskFormatError
from pytest_oneshot.harbor import collected_task, is_harbor_task
from pytest_oneshot.judge import Judge
from pytest_oneshot.model.replay import REPLAY_MODEL, recorded_judge_model
from pytest_oneshot.overrides import overridden
from pytest_oneshot.report.junit import junit_properties
from pytest_oneshot.report.resume import ItemKey, read_finished, set_aside, write_finished
from pytest_oneshot.report.rundir import item_dir_name
from pytest_oneshot.result import TrialResult
from pytest_oneshot.stash import (
    agent_key,
    agent_options_key,
    gateway_key,
    judge_key,
    overrides_key,
    registries_key,
    replay_key,
    settings_key,
    trial_key,
)
from pytest_oneshot.task import Task, load_task
from pytest_oneshot.trial import TrialConfig
from pytest_oneshot.validate import item_label, problem, validation_runs


class TaskFailed(Exception):
    """The agent's attempt was scored and did not pass; the message says why."""


class TaskDirectory(pytest.Directory):
    """A task directory: yields TaskItems, or one collection error naming the file and field."""

    def collect(self) -> Iterator[pytest.Item]:
        settings = self.config.stash[settings_key]
        try:
            task = collected_task(self.path, settings.cache_dir) if is_harbor_task(self.path) else load_task(self.path)
            task = overridden(task, self.config.stash[overrides_key])
        except TaskFormatError as exc:
            raise self.CollectError(str(exc)) from None
        for tag in task.spec.metadata.tags:
            self.config.addinivalue_line("markers", f"{tag}: tasks tagged {tag!r}")
        for model in _models(self.config):
            label = model or settings.agent
            for rollout in range(settings.rollouts):
                name = f"{task.name}[{label}-r{rollout}]"
                # An explicit nodeid, so pytest >= 9.2 parses "[label-rN]" as params like a
                # parametrized test's (else --lf cannot match the ids it stored).
                item = TaskItem.from_parent(
                    self, name=name, nodeid=f"{self.nodeid}::{name}", task=task, model=model, rollout=rollout
                )
                item.add_marker("oneshot")
                for tag in task.spec.metadata.tags:
                    item.add_marker(tag)
                yield item
        if settings.validate_tasks:
            for agent, run in validation_runs(settings.validate_runs):
                name = f"{task.name}[{item_label(agent, run)}]"
                item = ValidationItem.from_parent(
                    self, name=name, nodeid=f"{self.nodeid}::{name}", task=task, model=None, rollout=run, agent=agent
                )
                item.add_marker("oneshot")
                item.add_marker("oneshot_validate")
                yield item


def _models(config: pytest.Config) -> tuple[str | None, ...]:
    """One item per model for agents that use one (default: replay the cassette), else one."""
    settings = config.stash[settings_key]
    try:
        uses_model = getattr(config.stash[registries_key].agent.get(settings.agent), "uses_model", False)
    except OneshotError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not uses_model:
        return (None,)
    return settings.models or (REPLAY_MODEL,)


def _pool(session: pytest.Session) -> TrialPool:
    """The process's trial pool, made on first use."""
    pool = session.config.pluginmanager.get_plugin(TrialPool.plugin_name)
    if pool is None:
        pool = TrialPool(session, session.config.stash[settings_key].concurrency)
        session.config.pluginmanager.register(pool, TrialPool.plugin_name)
    return cast(TrialPool, pool)


def _agent(config: pytest.Config) -> Agent:
    if agent_key not in config.stash:
        settings = config.stash[settings_key]
        factory = config.stash[registries_key].agent.get(settings.agent)
        config.stash[agent_key] = factory(agent_options(config))
    return config.stash[agent_key]


def agent_options(config: pytest.Config) -> dict[str, str]:
    """The session's agent options, with what its factory finds once per session (see
    :class:`SessionOptions`); an xdist worker has its controller's."""
    if agent_options_key not in config.stash:
        settings = config.stash[settings_key]
        options = settings.agent_options()
        try:
            factory = config.stash[registries_key].agent.get(settings.agent)
        except OneshotError:  # an agent that cannot be loaded: every item reports it
            factory = None
        if isinstance(factory, SessionOptions):
            options = factory.session_options(options)
        config.stash[agent_options_key] = options
    return config.stash[agent_options_key]


def _judge(config: pytest.Config) -> Judge:
    if judge_key not in config.stash:
        settings = config.stash[settings_key]
        factory = config.stash[registries_key].judge.get(settings.judge)
        config.stash[judge_key] = factory(settings.judge_options())
    return config.stash[judge_key]


def _judge_model(config: pytest.Config, task: Task, model: str | None) -> str | None:
    """The item's judge model: the one given, else a replay where the task recorded judge answers for
    the agent's replayed cassette, else none (the rubrics no test scores stay unscored)."""
    return config.stash[settings_key].judge_model or recorded_judge_model(task, model)


class TaskItem(pytest.Item):
    def __init__(self, *, task: Task, model: str | None, rollout: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.model = model
        self.rollout = rollout

    @property
    def run_dir(self) -> Path:
        settings = self.config.stash[settings_key]
        return settings.runs_dir / settings.run_id / item_dir_name(self.name)

    @cached_property
    def resumed(self) -> TrialResult | None:
        """With ``--oneshot-resume``, this item's result if the resumed run finished it (same key).

        Decided once, by the process that runs the item, before its trial could start: the mark it
        reads can only be the earlier session's (this one writes an item's mark after running it)."""
        if self.config.stash[settings_key].resume is None:
            return None
        finished = read_finished(self.run_dir, self._key())
        return None if finished is None else finished.result

    def _key(self) -> ItemKey:
        settings = self.config.stash[settings_key]
        return ItemKey(self.task.content_digest, settings.agent, self.model, self.rollout)

    def setup(self) -> None:
        result = self.resumed or _pool(self.session).result(self)
        self.stash[trial_key] = result
        self.user_properties.extend(junit_properties(result))
        self.ihook.pytest_oneshot_trial_result(item=self, result=result)
        if result.outcome == "error":
            pytest.fail(f"{result.reason} [run dir: {result.run_dir}]", pytrace=False)

    def trial_phase(self, phase: str, duration: float) -> None:
        self.ihook.pytest_oneshot_phase(item=self, phase=phase, duration=duration)

    def trial_finished(self, result: TrialResult) -> None:
        """Its result counts (the session still ran): a resumed run reports it instead of running it."""
        write_finished(Path(result.run_dir), self._key(), self.nodeid)

    def trial_config(self) -> TrialConfig:
        """This item's trial, about to start (a usage problem fails the item here). An earlier attempt's
        directory (an unfinished or outdated trial of a resumed run) is kept, renamed, not overwritten."""
        settings = self.config.stash[settings_key]
        registries = self.config.stash[registries_key]
        judge_model = _judge_model(self.config, self.task, self.model)
        try:
            agent = self.trial_agent()
            sandbox_factory = registries.sandbox.get(settings.sandbox)
            judge = _judge(self.config) if judge_model else None
        except OneshotError as exc:
            pytest.fail(str(exc), pytrace=False)
        set_aside(self.run_dir)
        return TrialConfig(
            task=self.task,
            agent=agent,
            sandbox_factory=sandbox_factory,
            item_id=self.name,
            run_id=settings.run_id,
            run_dir=self.run_dir,
            cache_dir=settings.cache_dir,
            model=self.model,
            rollout=self.rollout,
            agent_timeout_sec=settings.timeout,
            min_score=settings.min_score,
            sandbox_options=settings.sandbox_options(),
            replay=self.config.stash[replay_key],
            gateway=self.config.stash[gateway_key],
            judge=judge,
            judge_model=judge_model,
        )

    def trial_agent(self) -> Agent:
        return _agent(self.config)

    def runtest(self) -> None:
        result = self.stash[trial_key]
        if result.outcome != "passed":
            raise TaskFailed(f"{result.outcome}: {result.reason} [run dir: {result.run_dir}]")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TaskFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"oneshot task {self.name}"


class ValidationItem(TaskItem):
    """``--oneshot-validate``: the task's trial with ``oracle`` (must pass) or ``nop`` (must fail)."""

    def __init__(self, *, agent: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent_name = agent

    def trial_agent(self) -> Agent:
        return self.config.stash[registries_key].agent.get(self.agent_name)({})

    def runtest(self) -> None:
        result = self.stash[trial_key]
        why = problem(self.agent_name, result.outcome, result.reason)
        if why:
            raise TaskFailed(f"invalid task: {self.agent_name}: {why} [run dir: {result.run_dir}]")
