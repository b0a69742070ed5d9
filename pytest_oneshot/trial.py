"""One trial = one agent attempt at one task, as a sequence of timed phases.

prepare (repo snapshot, model route) -> sandbox (the agent's, and a fresh one for scoring,
started while the agent works) -> agent -> diff (every process of the agent's sandbox stopped,
its files compared with the fresh tree) -> tests (in the fresh sandbox: its tree plus the
agent's change minus test infrastructure, plus the hidden files) -> score -> judge (only with a
judge and a rubric no test scored: it adds scores, the tests' verdict stands). A research-bench task
(``metric``) has a third fresh sandbox where the metric is measured at the start commit; its tests
phase measures it again on the scored tree (:mod:`pytest_oneshot.scoring.metric`).

So the only thing of the agent's that reaches scoring is its change to the files, as the harness
reads them: not its git, processes, HOME or /tmp. Every phase is timed; whatever a phase
produced is written to the run dir even when a later phase fails, and an infrastructure failure
becomes outcome ``error`` (a pytest error) rather than an agent failure -- never for something
the agent did. A model agent's traffic goes through a route of the model gateway, which counts
(and with tracing records) it; the route closes as soon as the agent stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pytest_oneshot.agent import Agent, AgentRequest, AgentResult
from pytest_oneshot.change import Change, Manifest, UnreadableWorkspace, render_patch
from pytest_oneshot.errors import InfraError, OneshotError
from pytest_oneshot.judge import Judge, JudgeError
from pytest_oneshot.model.gateway import ModelGateway, ModelRoute
from pytest_oneshot.model.replay import ReplayService, judge_cassette
from pytest_oneshot.repo import snapshot
from pytest_oneshot.report.rundir import item_dir_name, write_judge_file, write_phase_start, write_trial_files
from pytest_oneshot.result import AgentSummary, Outcome, TrialResult
from pytest_oneshot.sandbox import Sandbox, SandboxFactory, SandboxSpec, repo_root
from pytest_oneshot.scoring.commands import command_infrastructure, command_paths, run_command_tests
from pytest_oneshot.scoring.judging import judge_rubrics, unscored
from pytest_oneshot.scoring.metric import MetricResult, metric_outcome, run_metric
from pytest_oneshot.scoring.overlay import default_infrastructure, scored_tree
from pytest_oneshot.scoring.pytest_config import find_start_config
from pytest_oneshot.scoring.rubric import score_rubrics, total_score
from pytest_oneshot.scoring.tests import TestRun, graded_files, graded_tests, run_hidden_tests
from pytest_oneshot.task import Task
from pytest_oneshot.usage import TokenUsage
from pytest_oneshot.workspace import collect_change, commit_baseline, fresh_manifest, fresh_side, write_scored_tree


class Phase(StrEnum):
    PREPARE = "prepare"
    SANDBOX = "sandbox"
    AGENT = "agent"
    DIFF = "diff"
    TESTS = "tests"
    SCORE = "score"
    JUDGE = "judge"


class Gate(Protocol):
    """Lets a trial past its sandbox phase: it bounds how many agents run at once (each trial's tests
    run as the next agent starts, so a model-bound run keeps the CPU busy while agents wait)."""

    def enter(self) -> None:
        """Wait for this trial's turn. Raises InfraError when the session stops meanwhile."""

    def leave(self) -> None:
        """The trial's agent is done, or the trial ended early (idempotent; also when it never entered)."""


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
    sandbox_options: Mapping[str, str] = field(default_factory=dict)
    agent_env: Mapping[str, str] = field(default_factory=dict)
    replay: ReplayService | None = None
    """Serves the task's cassette when ``model`` is a replay model."""
    gateway: ModelGateway | None = None
    """Routes a model agent's traffic (key, token count and limit, tracing). None: a private one
    for this trial, which reaches replay cassettes or the OpenAI API without a key."""
    gate: Gate | None = None
    """Entered between the sandbox and agent phases, so sandboxes can start ahead of their turn."""
    judge: Judge | None = None
    """Scores the rubrics no test scored, with ``judge_model``, in the ``judge`` phase (None: they stay
    unscored)."""
    judge_model: str | None = None
    stop_later: Callable[[Callable[[], None]], object] | None = None
    """Runs the sandboxes' stop once the result is written (e.g. in the background); None: the stop
    happens before ``run_trial`` returns."""

    @property
    def trial_id(self) -> str:
        """Unique, URL- and name-safe id of this trial: run id + item."""
        return f"{self.run_id}-{item_dir_name(self.item_id)}"


@dataclass
class _TrialState:
    config: TrialConfig
    result: TrialResult
    sandbox: Sandbox | None = None
    """The agent's."""
    scoring: Sandbox | None = None
    """A fresh one of the same spec, never reachable by the agent, where its change is tested."""
    scoring_spec: SandboxSpec | None = None
    baseline: Sandbox | None = None
    """A metric task's third fresh sandbox, where the metric is measured at the start commit."""
    baseline_started: Future[None] | None = None
    fresh: Future[Manifest] | None = None
    """The scoring sandbox started and its tree read, while the agent's starts and works."""
    patch: Future[bytes] | None = None
    """The change rendered as a patch for the run dir, while the tests run."""
    route: ModelRoute | None = None
    private_gateway: ModelGateway | None = None
    diff: bytes = b""
    agent_result: AgentResult | None = None

    def stop_sandboxes(self) -> None:
        for sandbox in (self.sandbox, self.scoring, self.baseline):
            if sandbox is not None:
                sandbox.stop()

    @contextmanager
    def phase(self, phase: Phase, on_phase: Callable[[str, float], None] | None) -> Iterator[None]:
        with contextlib.suppress(OSError):  # a disk the agent's code filled: the trial's files are written at its end
            write_phase_start(self.config.run_dir, self.result, phase.value)
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
            overrides=[dict(record) for record in config.task.overrides.records] if config.task.overrides else None,
            run_id=config.run_id,
            model=config.model,
            rollout=config.rollout,
            min_score=config.min_score,
            agent=AgentSummary(name=config.agent.name),
            run_dir=str(config.run_dir),
        ),
    )
    executor = ThreadPoolExecutor(max_workers=3, thread_name_prefix="oneshot-trial")
    try:
        _run_phases(state, on_phase, executor)
    except InfraError as exc:
        state.result.outcome, state.result.reason = "error", str(exc)
    finally:
        if config.gate is not None:
            config.gate.leave()
        try:
            _close_route(state)  # its token counts and trace belong in the files
            _join_patch(state)
        finally:
            try:
                _write_files(state)  # before cleanup can fail
            finally:
                if state.private_gateway is not None:
                    state.private_gateway.close()
                executor.shutdown(wait=True)  # a scoring sandbox still starting is stopped below
                if config.stop_later is not None:
                    config.stop_later(state.stop_sandboxes)
                else:
                    state.stop_sandboxes()
    return state.result


def _write_files(state: _TrialState) -> None:
    """The trial's files; when they do not fit, the disk may be full of what the agent's code left in
    the sandboxes (its tests ran there): they are stopped, and the files written again."""
    try:
        write_trial_files(state.config.run_dir, state.result, state.diff)
    except OSError:
        state.stop_sandboxes()
        write_trial_files(state.config.run_dir, state.result, state.diff)


_WRITE_OUTSIDE_REPO = (
    'p=$1; case $p in "~/"*) p="$HOME/${p#"~/"}";; esac; '
    'case "$p/" in "$2"/*) echo "$1 is inside the repo ($2): inject it with target repo" >&2; exit 3;; esac; '
    'mkdir -p -- "$(dirname -- "$p")" && cat > "$p" && if [ "$3" = 1 ]; then chmod +x -- "$p"; fi'
)


def _write_sandbox_files(sandbox: Sandbox, root: str, task: Task) -> None:
    """Overrides' files for the agent's sandbox only (outside the repo: they are not part of its change)."""
    for path, data, executable in task.overrides.sandbox_files if task.overrides else ():
        argv = ["bash", "-c", _WRITE_OUTSIDE_REPO, "inject", path, root, "1" if executable else "0"]
        result = sandbox.exec(argv, stdin=data, cwd="/", timeout=60.0)
        if not result.ok:
            raise InfraError("sandbox", f"overrides inject_files {path}: {result.text().strip()[-300:]}")


def _start_fresh(sandbox: Sandbox) -> Manifest:
    sandbox.start()
    return fresh_manifest(sandbox)


def _join_patch(state: _TrialState) -> None:
    patch, state.patch = state.patch, None
    if patch is not None:
        state.diff = patch.result()
        state.result.diff_bytes = len(state.diff)
        state.result.diff_lines = state.diff.count(b"\n")


def _run_phases(
    state: _TrialState, on_phase: Callable[[str, float], None] | None, executor: ThreadPoolExecutor
) -> None:
    config, result = state.config, state.result
    task = config.task
    with state.phase(Phase.PREPARE, on_phase):
        repo = snapshot(task, config.cache_dir)
        if not graded_tests(task.spec) and task.spec.metric is None:
            raise InfraError(
                "prepare",
                "the task has no hidden tests (tests.fail_to_pass or evaluation.test_scripts) and no metric: "
                "nothing can score it",
            )
        if not task.instructions.strip():
            raise InfraError("prepare", "the task has no instructions (lm.instructions or LM_INSTRUCTIONS.md)")
        if config.agent.uses_model:
            state.route = _open_route(state)
    with state.phase(Phase.SANDBOX, on_phase):
        spec = SandboxSpec(
            task=task,
            repo_snapshot=repo,
            trial_id=config.trial_id,
            run_id=config.run_id,
            network="loopback" if "loopback" in (config.agent.network, task.spec.environment.network) else "none",
            cpus=task.spec.environment.cpus,
            memory_mb=task.spec.environment.memory_mb,
            mounts=config.agent.mounts(),
            options=config.sandbox_options,
            model_url=state.route.endpoint.base_url if state.route else None,
        )
        state.scoring_spec = dataclasses.replace(
            spec, trial_id=f"{spec.trial_id}-score", network="none", mounts={}, scoring=True, model_url=None
        )
        state.scoring = config.sandbox_factory(state.scoring_spec)
        state.fresh = executor.submit(_start_fresh, state.scoring)
        if task.spec.metric is not None:
            state.baseline = config.sandbox_factory(
                dataclasses.replace(state.scoring_spec, trial_id=f"{spec.trial_id}-base")
            )
            state.baseline_started = executor.submit(state.baseline.start)
        state.sandbox = config.sandbox_factory(spec)
        state.sandbox.start()
        commit_baseline(state.sandbox)
        _write_sandbox_files(state.sandbox, repo_root(state.sandbox, spec), task)
    if config.gate is not None:
        config.gate.enter()
    with state.phase(Phase.AGENT, on_phase):
        log_dir = config.run_dir / "agent"
        log_dir.mkdir(exist_ok=True)
        try:
            state.agent_result = config.agent.run(
                state.sandbox,
                AgentRequest(
                    task=task,
                    instructions=task.instructions,
                    model=config.model,
                    timeout_sec=config.agent_timeout_sec or task.spec.limits.agent_timeout_sec,
                    log_dir=log_dir,
                    token_limit=task.spec.limits.token_limit,
                    env={**(task.overrides.env if task.overrides else {}), **config.agent_env},
                    endpoint=state.route.endpoint if state.route else None,
                ),
            )
            if state.route is not None:
                state.agent_result = state.route.settle(state.agent_result)
        finally:
            _close_route(state)
        result.agent = _summarize_agent(config.agent.name, state.agent_result)
    if config.gate is not None:
        config.gate.leave()
    with state.phase(Phase.DIFF, on_phase):
        assert state.fresh is not None and state.scoring is not None and state.scoring_spec is not None
        fresh = state.fresh.result()
        try:
            change = collect_change(state.sandbox, fresh, repo)  # its processes are stopped: it is done
        except UnreadableWorkspace as exc:
            result.outcome, result.reason = "failed", f"the agent's workspace cannot be read: {exc}"
            return
        finally:
            state.sandbox.stop()  # what it left (a disk it filled) is gone before its change is tested
        root = repo_root(state.scoring, state.scoring_spec)
        state.patch = executor.submit(render_patch, change, fresh_side(state.scoring, root, change.paths, fresh, repo))
        result.changed_files = change.paths
        result.left_out = dict(change.left_out)
    with state.phase(Phase.TESTS, on_phase):
        if task.spec.metric is not None:
            result.tests, result.metric = _score_metric(state, change, root, fresh)
        else:
            result.tests = _score_change(state, change, root, fresh)
    with state.phase(Phase.SCORE, on_phase):
        result.rubrics = score_rubrics(task.spec, result.tests)
        result.score = total_score(result.rubrics)
        result.resolved = result.tests.resolved
        result.outcome, result.reason = _verdict(result, state.agent_result, config.min_score)
    if config.judge is not None and config.judge_model and unscored(task.spec.evaluation.rubrics, result.rubrics):
        with state.phase(Phase.JUDGE, on_phase):
            _judge(state, config.judge, config.judge_model)


def _judge(state: _TrialState, judge: Judge, model: str) -> None:
    """Judge the rubrics no test scored; the tests' verdict stands, the total (and a min score) counts them."""
    config, result = state.config, state.result
    assert result.tests is not None and state.agent_result is not None
    _join_patch(state)
    cassette = judge_cassette(config.task, model, config.model)
    digest = hashlib.sha256(state.diff).hexdigest()
    replay = config.replay or ReplayService()  # a private one is closed below

    def endpoint(rubric_id: str) -> str | None:
        if cassette is None:
            return None
        return replay.judge_endpoint(cassette, rubric_id, digest, f"{config.trial_id}-judge-{rubric_id}")

    records: dict[str, object] = {}
    try:
        result.rubrics = judge_rubrics(
            judge,
            model=model,
            task_id=config.task.spec.task_id,
            instructions=config.task.instructions,
            diff=state.diff,
            tests=result.tests,
            rubrics=config.task.spec.evaluation.rubrics,
            scores=result.rubrics,
            endpoint=endpoint,
            record=records.__setitem__,
        )
    except JudgeError as exc:
        raise InfraError("judge", str(exc)) from None
    finally:
        write_judge_file(config.run_dir, {"judge": judge.name, "model": model, "rubrics": records})
        if replay is not config.replay:
            replay.close()
    result.score = total_score(result.rubrics)
    result.outcome, result.reason = _verdict(result, state.agent_result, config.min_score)


def _score_change(state: _TrialState, change: Change, root: str, fresh: Manifest) -> TestRun:
    """Write the scored tree into the fresh sandbox and run the graded tests there."""
    task, scoring, spec = state.config.task, state.scoring, state.scoring_spec
    assert scoring is not None and spec is not None
    log = state.config.run_dir / "tests.log"
    if task.spec.tests.mode != "pytest":  # the task's own command: no pytest config to pin
        infrastructure = command_infrastructure(task.spec, sorted(task.hidden_files()))
        _write_change(state, change, root, fresh, infrastructure=infrastructure, config_file=None)
        return run_command_tests(scoring, task.spec, log)
    files = graded_files(task.spec)
    config = find_start_config(spec.repo_snapshot, task.spec.repo.subdir, files)
    _write_change(
        state,
        change,
        root,
        fresh,
        infrastructure=task.spec.tests.infrastructure or default_infrastructure(files),
        config_file=config.effective_file,
        graded_files=files,
        import_roots=config.pythonpath,
        extra_files=None if config.config_file else {config.effective_file: b"[pytest]\n"},
    )
    return run_hidden_tests(scoring, task.spec, root, config, log)


def _write_change(
    state: _TrialState,
    change: Change,
    root: str,
    fresh: Manifest,
    *,
    infrastructure: Iterable[str],
    config_file: str | None,
    graded_files: Iterable[str] = (),
    import_roots: Iterable[str] = (),
    extra_files: Mapping[str, bytes] | None = None,
) -> None:
    """Turn the fresh scoring sandbox into the scored tree (:func:`scored_tree`'s rules: what stays as at the start)."""
    task, scoring = state.config.task, state.scoring
    assert scoring is not None
    tree = scored_tree(
        change,
        workdir=task.spec.repo.subdir,
        infrastructure=infrastructure,
        hidden_files=task.hidden_files(),
        config_file=config_file,
        graded_files=graded_files,
        import_roots=import_roots,
        fresh_paths=fresh.keys(),
        extra_files=extra_files,
    )
    state.result.reset_to_start = dict(tree.reset)
    write_scored_tree(scoring, root, tree)


def _score_metric(state: _TrialState, change: Change, root: str, fresh: Manifest) -> tuple[TestRun, MetricResult]:
    """Measure the metric at the start commit (its own fresh sandbox), then on the scored tree.

    The metric's files, its output file and the files its command names are infrastructure: kept as at the start."""
    metric, run_dir = state.config.task.spec.metric, state.config.run_dir
    assert metric is not None and state.baseline is not None and state.baseline_started is not None
    state.baseline_started.result()
    for path, data in state.config.task.hidden_files().items():
        state.baseline.write_file(path, data)
    before = run_metric(state.baseline, metric, run_dir / "metric-before.log")
    if before.problem is not None:  # nothing of the agent's is involved: the task's metric does not run
        raise InfraError("tests", f"metric at the start commit: {before.problem}; see metric-before.log")
    kept = [*metric.files, *([metric.output] if metric.output else []), *command_paths(metric.command)]
    _write_change(state, change, root, fresh, infrastructure=kept, config_file=None)
    assert state.scoring is not None
    after = run_metric(state.scoring, metric, run_dir / "metric-after.log")
    return metric_outcome(metric, before, after)


def _open_route(state: _TrialState) -> ModelRoute:
    """The trial's model route: to the task's cassette server in replay mode (a remote gateway serves the
    cassette itself), else the model API."""
    config = state.config
    gateway = config.gateway or state.private_gateway
    if gateway is None:
        gateway = state.private_gateway = ModelGateway()
    upstream = cassette = None
    if config.replay is not None and gateway.remote:
        cassette = config.replay.cassette(config.task, config.model)
    elif config.replay is not None:
        upstream = config.replay.endpoint(config.task, config.model, config.trial_id)
    try:
        return gateway.open(
            config.trial_id,
            model=config.model,
            limit=config.task.spec.limits.token_limit,
            upstream=upstream,
            cassette=cassette,
        )
    except OneshotError as exc:
        raise InfraError("prepare", str(exc)) from None


def _close_route(state: _TrialState) -> None:
    """Stop the trial's model route; what it counted (and recorded) joins the result."""
    route, state.route = state.route, None
    if route is None:
        return
    report = route.close(state.config.run_dir / "trace.json")
    result = state.result
    result.model_requests = report.requests
    result.tokens = _token_counts(report.usage)
    result.cost_usd = report.cost_usd
    result.trace = report.trace_path.name if report.trace_path else None
    result.trace_complete = report.trace_complete
    reported = state.agent_result.usage if state.agent_result else None
    result.tokens_agree = None if reported is None else reported == report.usage


def _token_counts(usage: TokenUsage) -> dict[str, int]:
    return {**usage.__dict__, "total_tokens": usage.total_tokens}


def _summarize_agent(name: str, agent: AgentResult) -> AgentSummary:
    return AgentSummary(
        name=name,
        status=agent.status,
        message=agent.message,
        exit_code=agent.exit_code,
        usage=None if agent.usage is None else _token_counts(agent.usage),
    )


def _verdict(result: TrialResult, agent: AgentResult, min_score: float | None) -> tuple[Outcome, str]:
    tests = result.tests
    assert tests is not None
    summary = (
        f"fail_to_pass {tests.count('fail_to_pass')}/{tests.total('fail_to_pass')} passed, "
        f"pass_to_pass {tests.count('pass_to_pass')}/{tests.total('pass_to_pass')} passed"
    )
    if agent.status != "completed":
        return agent.status, f"{agent.message or agent.status}; {summary}"
    if tests.problem:  # the agent's code runs under the tests and can cause any of these: never a pass
        return "failed", f"the test run cannot be trusted: {tests.problem}"
    if not tests.resolved:
        return "failed", f"not resolved: {summary}; {tests.failing()}"
    if min_score is not None:
        if result.score is None:
            return "failed", f"resolved, but no rubric is scored to compare with min score {min_score}"
        if result.score < min_score:
            return "failed", f"resolved, but score {result.score:.2f} < min score {min_score}"
    return "passed", summary
