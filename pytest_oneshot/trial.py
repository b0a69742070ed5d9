"""One trial = one agent attempt at one task, as a sequence of timed phases.

prepare (repo snapshot) -> sandbox (start, baseline) -> agent -> diff -> tests (hidden
tests written in only now) -> score. Every phase is timed; whatever a phase produced is
written to the run dir even when a later phase fails, and an infrastructure failure
becomes outcome ``error`` (a pytest error) rather than an agent failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from pytest_oneshot.agent import Agent, AgentRequest, AgentResult, TokenUsage
from pytest_oneshot.errors import InfraError
from pytest_oneshot.replay import ReplayService
from pytest_oneshot.repo import snapshot
from pytest_oneshot.report.rundir import item_dir_name, write_trial_files
from pytest_oneshot.sandbox import Sandbox, SandboxFactory, SandboxSpec
from pytest_oneshot.scoring.rubric import RubricScore, score_rubrics, total_score
from pytest_oneshot.scoring.tests import TestRun, graded_tests, run_hidden_tests
from pytest_oneshot.task import Task
from pytest_oneshot.workspace import Workspace

Outcome = Literal["passed", "failed", "timeout", "agent_error", "token_limit", "error"]


class Phase(str, Enum):
    PREPARE = "prepare"
    SANDBOX = "sandbox"
    AGENT = "agent"
    DIFF = "diff"
    TESTS = "tests"
    SCORE = "score"


@dataclass(frozen=True)
class TrialConfig:
    task: Task
    agent: Agent
    sandbox_factory: SandboxFactory
    item_id: str
    run_id: str
    run_dir: Path
    cache_dir: Path
    model: str | None = None
    rollout: int = 0
    agent_timeout_sec: float | None = None
    """Overrides the task's ``limits.agent_timeout_sec`` when set."""
    min_score: float | None = None
    agent_env: Mapping[str, str] = field(default_factory=dict)
    replay: ReplayService | None = None
    """Serves the task's cassette when ``model`` is a replay model."""

    @property
    def trial_id(self) -> str:
        """Unique, URL- and name-safe id of this trial: run id + item."""
        return f"{self.run_id}-{item_dir_name(self.item_id)}"


class AgentSummary(BaseModel):
    name: str
    status: str | None = None
    message: str = ""
    exit_code: int | None = None
    usage: dict[str, int] | None = None


class TrialResult(BaseModel):
    """Everything a trial found; the JSON report and JUnit properties are views of it."""

    task_id: str
    task_name: str
    item_id: str
    run_id: str
    model: str | None
    rollout: int
    outcome: Outcome = "error"
    reason: str = ""
    resolved: bool | None = None
    score: float | None = None
    min_score: float | None = None
    rubrics: list[RubricScore] = []
    tests: TestRun | None = None
    agent: AgentSummary
    diff_bytes: int = 0
    diff_lines: int = 0
    changed_files: list[str] = []
    restored_test_config: list[str] = []
    phases: dict[str, float] = {}
    run_dir: str = ""


@dataclass
class _TrialState:
    config: TrialConfig
    result: TrialResult
    sandbox: Sandbox | None = None
    model_base_url: str | None = None
    baseline: str = ""
    diff: bytes = b""
    agent_result: AgentResult | None = None

    @contextmanager
    def phase(self, phase: Phase, on_phase: Callable[[str, float], None] | None) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            duration = time.monotonic() - started
            self.result.phases[phase.value] = round(duration, 4)
            if on_phase:
                on_phase(phase.value, duration)


def run_trial(config: TrialConfig, on_phase: Callable[[str, float], None] | None = None) -> TrialResult:
    """Run every phase; never raises for infrastructure problems (outcome ``error`` instead)."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    state = _TrialState(
        config,
        TrialResult(
            task_id=config.task.spec.task_id,
            task_name=config.task.name,
            item_id=config.item_id,
            run_id=config.run_id,
            model=config.model,
            rollout=config.rollout,
            min_score=config.min_score,
            agent=AgentSummary(name=config.agent.name),
            run_dir=str(config.run_dir),
        ),
    )
    try:
        _run_phases(state, on_phase)
    except InfraError as exc:
        state.result.outcome, state.result.reason = "error", str(exc)
    finally:
        if state.sandbox is not None:
            state.sandbox.stop()
        write_trial_files(config.run_dir, state.result, state.diff)
    return state.result


def _run_phases(state: _TrialState, on_phase: Callable[[str, float], None] | None) -> None:
    config, result = state.config, state.result
    task = config.task
    with state.phase(Phase.PREPARE, on_phase):
        repo = snapshot(task, config.cache_dir)
        if not graded_tests(task.spec):
            raise InfraError(
                "prepare",
                "the task has no hidden tests (tests.fail_to_pass or evaluation.test_scripts): nothing can score it",
            )
        if not task.instructions.strip():
            raise InfraError("prepare", "the task has no instructions (lm.instructions or LM_INSTRUCTIONS.md)")
        if config.replay is not None:
            state.model_base_url = config.replay.endpoint(task, config.model, config.trial_id)
    with state.phase(Phase.SANDBOX, on_phase):
        state.sandbox = config.sandbox_factory(
            SandboxSpec(
                task=task,
                repo_snapshot=repo,
                trial_id=config.trial_id,
                run_id=config.run_id,
                network="loopback" if "loopback" in (config.agent.network, task.spec.environment.network) else "none",
                cpus=task.spec.environment.cpus,
                memory_mb=task.spec.environment.memory_mb,
                mounts=config.agent.mounts(),
            )
        )
        state.sandbox.start()
        workspace = Workspace.open(state.sandbox)
        state.baseline = workspace.make_baseline()
    with state.phase(Phase.AGENT, on_phase):
        log_dir = config.run_dir / "agent"
        log_dir.mkdir(exist_ok=True)
        state.agent_result = config.agent.run(
            state.sandbox,
            AgentRequest(
                task=task,
                instructions=task.instructions,
                model=config.model,
                timeout_sec=config.agent_timeout_sec or task.spec.limits.agent_timeout_sec,
                log_dir=log_dir,
                token_limit=task.spec.limits.token_limit,
                env=config.agent_env,
                base_url=state.model_base_url,
            ),
        )
        result.agent = _summarize_agent(config.agent.name, state.agent_result)
    with state.phase(Phase.DIFF, on_phase):
        state.diff = workspace.collect_diff(state.baseline)
        result.diff_bytes = len(state.diff)
        result.diff_lines = state.diff.count(b"\n")
        result.changed_files = workspace.changed_paths(state.baseline)
    with state.phase(Phase.TESTS, on_phase):
        result.restored_test_config = workspace.restore_test_runner_config(state.baseline, result.changed_files)
        workspace.write_hidden_tests(task.hidden_test_files())
        result.tests = run_hidden_tests(state.sandbox, task.spec, config.run_dir / "tests.log")
    with state.phase(Phase.SCORE, on_phase):
        result.rubrics = score_rubrics(task.spec, result.tests)
        result.score = total_score(result.rubrics)
        result.resolved = result.tests.resolved
        result.outcome, result.reason = _verdict(result, state.agent_result, config.min_score)


def _summarize_agent(name: str, agent: AgentResult) -> AgentSummary:
    usage: TokenUsage | None = agent.usage
    return AgentSummary(
        name=name,
        status=agent.status,
        message=agent.message,
        exit_code=agent.exit_code,
        usage=None if usage is None else {**usage.__dict__, "total_tokens": usage.total_tokens},
    )


def _verdict(result: TrialResult, agent: AgentResult, min_score: float | None) -> tuple[Outcome, str]:
    tests = result.tests
    assert tests is not None
    summary = (
        f"fail_to_pass {tests.count('fail_to_pass')}/{tests.total('fail_to_pass')} passed, "
        f"pass_to_pass {tests.count('pass_to_pass')}/{tests.total('pass_to_pass')} passed"
    )
    if tests.problem:
        summary += f" ({tests.problem})"
    if agent.status != "completed":
        return agent.status, f"{agent.message or agent.status}; {summary}"
    if not tests.resolved:
        failing = [f"{test_id} {status}" for test_id, status in tests.statuses.items() if status != "passed"]
        return "failed", f"not resolved: {summary}; " + ", ".join(failing[:5])
    if min_score is not None:
        if result.score is None:
            return "failed", f"resolved, but no rubric is scored to compare with min score {min_score}"
        if result.score < min_score:
            return "failed", f"resolved, but score {result.score:.2f} < min score {min_score}"
    return "passed", summary
