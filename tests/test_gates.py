"""Gates end to end: whole pytest processes, real trials in the local sandbox, a scripted model API.

3 tasks x 2 models x 4 rollouts. The agent (registered by a conftest, as any plugin would) asks the
scripted Responses server once per trial through the harness's model gateway (so tokens and cost
are counted for real), then applies the task's reference fix or not, as ``solves.json`` says for
its model, task and rollout: ``steady`` solves a and b always and c never; ``flaky`` solves a
always, b in rollouts 0 and 2 only, c never. Every figure the gates judge is computed by hand here.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.model.cassette import Turn, Usage, message
from pytest_oneshot.model.scripted import ScriptedResponsesServer

RunAndParse = Callable[..., Any]
TASKS = ("task-a", "task-b", "task-c")
MODELS = ("flaky", "steady")
ROLLOUTS = 4
SOLVES = {
    "steady": {"task-a": [0, 1, 2, 3], "task-b": [0, 1, 2, 3], "task-c": []},
    "flaky": {"task-a": [0, 1, 2, 3], "task-b": [0, 2], "task-c": []},
}
USAGE = Usage(input_tokens=1000, output_tokens=100)
PRICES = {"steady": {"input": 1.0, "output": 10.0}, "flaky": {"input": 2.0, "output": 20.0}}

SCRIPTED_AGENT = """
import json
import re
import urllib.request
from pathlib import Path

from pytest_oneshot.agent import AgentResult


class ScriptedAgent:
    name = "scripted"
    network = "none"
    uses_model = True

    def __init__(self, options):
        self.solves = json.loads(Path(__file__).with_name("solves.json").read_text())

    def mounts(self):
        return {}

    def run(self, sandbox, request):
        body = json.dumps({"model": request.model, "input": [], "stream": True}).encode()
        headers = {"content-type": "application/json", **request.endpoint.headers}
        post = urllib.request.Request(request.endpoint.base_url + "/responses", body, headers)
        with urllib.request.urlopen(post, timeout=30) as answer:
            answer.read()
        # The rollout is not part of an agent request; the item's run dir ends in "-r<N>".
        rollout = int(re.search(r"-r(\\d+)$", request.log_dir.parent.name).group(1))
        if rollout not in self.solves[request.model][request.task.name]:
            return AgentResult("completed", exit_code=0)
        applied = sandbox.exec(["git", "apply", "-"], stdin=request.task.reference_patch())
        return AgentResult("completed" if applied.ok else "agent_error", applied.text())


def pytest_oneshot_register(registries):
    registries.agent.register("scripted", ScriptedAgent)
"""


@pytest.fixture
def model_api() -> Iterator[str]:
    """The scripted model API: every request gets one message turn billed ``USAGE``."""
    with ScriptedResponsesServer() as server:
        yield server.add_script(uuid.uuid4().hex[:12], [Turn(output=[message("done")], usage=USAGE)])


@pytest.fixture
def gated(pytester: pytest.Pytester, make_task: Callable[..., Path], model_api: str) -> Callable[..., Any]:
    """Runs pytest on the three tasks with both models; returns ``run_and_parse``'s result."""
    for task in TASKS:
        make_task(pytester.path / "tasks" / task)
    pytester.makeconftest(SCRIPTED_AGENT)
    (pytester.path / "solves.json").write_text(json.dumps(SOLVES))
    (pytester.path / "prices.json").write_text(json.dumps(PRICES))
    return lambda run_and_parse, *args: run_and_parse(
        "tasks", "--oneshot-agent=scripted", *(f"--oneshot-model={model}" for model in MODELS),
        f"--oneshot-rollouts={ROLLOUTS}", f"--oneshot-base-url={model_api}", "--oneshot-prices=prices.json",
        "--oneshot-concurrency=2", "-p", "no:randomly", *args,
    )  # fmt: skip


def _wilson(passed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval as its textbook formula: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = passed / n
    centre, half = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return ((centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n))


def _glob(text: str) -> str:
    """``text`` for fnmatch_lines, its brackets matched literally (``*`` stays a wildcard)."""
    return re.sub(r"([\[\]])", r"[\1]", text)


def _gates(run: Any) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(gate["gate"], gate["model"]): gate for gate in run.report["gates"]}


def _failed_items(run: Any) -> set[str]:
    """Task testcases (the per-model suites' testcases are named ``summary`` and ``gate ...``) that failed."""
    cases = [case for case in run.junit.iter("testcase") if "[" in case.get("name", "")]
    return {case.get("name", "") for case in cases if case.find("failure") is not None}


UNSOLVED = {
    f"{task}[{model}-r{rollout}]"
    for model, tasks in SOLVES.items()
    for task in TASKS
    for rollout in range(ROLLOUTS)
    if rollout not in tasks[task]
}


def test_gates_decide_the_exit_status_and_junit_keeps_every_failure(
    gated: Callable[..., Any], run_and_parse: RunAndParse
) -> None:
    # By hand: steady passes 8 of 12 (a 4, b 4, c 0), flaky 6 of 12 (a 4, b 2, c 0).
    steady_low, steady_high = _wilson(8, 12)
    flaky_low, flaky_high = _wilson(6, 12)
    assert 0.39 < steady_low < 0.40 and 0.25 < flaky_low < 0.26

    # On the mean: steady 0.667 >= 0.55 holds, flaky 0.5 fails; scores (a solved item scores 1, an
    # unsolved one 0) average over tasks to 2/3 and 1/2, both >= 0.4.
    run = gated(run_and_parse, "--oneshot-min-pass-rate=0.55", "--oneshot-min-mean-score=0.4")

    assert run.result.ret == 1
    run.result.assert_outcomes(passed=14, failed=10)
    assert _failed_items(run) == UNSOLVED, "every unsolved item is a JUnit failure"
    gates = _gates(run)
    steady, flaky = gates[("min_pass_rate", "steady")], gates[("min_pass_rate", "flaky")]
    assert (steady["held"], flaky["held"]) == (True, False)
    assert steady["value"] == pytest.approx(8 / 12, abs=1e-6) and flaky["value"] == pytest.approx(0.5)
    assert steady["ci95"] == pytest.approx([steady_low, steady_high], abs=1e-4)
    assert flaky["ci95"] == pytest.approx([flaky_low, flaky_high], abs=1e-4)
    assert gates[("min_mean_score", "steady")]["value"] == pytest.approx(2 / 3, abs=1e-6)
    assert gates[("min_mean_score", "flaky")]["value"] == pytest.approx(0.5)
    assert gates[("min_mean_score", "steady")]["held"] and gates[("min_mean_score", "flaky")]["held"]
    errors = gates[("max_errors", None)]
    assert errors["held"] and errors["value"] == 0 and errors["errors"] == []
    run.result.stdout.fnmatch_lines(
        [
            "*= oneshot gates =*",
            _glob(f"min_pass_rate*flaky*0.5000 [{flaky_low:.4f}, {flaky_high:.4f}]*>= 0.55 (mean)*FAILED"),
            _glob(f"min_pass_rate*steady*0.6667 [{steady_low:.4f}, {steady_high:.4f}]*>= 0.55 (mean)*held"),
            "oneshot gates: 1 of 5 failed -> exit status 1 *",
        ]
    )
    junit_gate = next(
        case
        for case in run.junit.iter("testcase")
        if case.get("classname") == "oneshot.model.flaky" and case.get("name") == "gate min_pass_rate"
    )
    assert junit_gate.find("failure") is not None, "the failing gate is a JUnit failure of the model's suite"

    # Judged on the interval's lower bound: 0.3906 and 0.2538 both reach 0.25, so every gate holds
    # and the run exits 0 although the same ten items fail.
    run = gated(run_and_parse, "--oneshot-min-pass-rate=0.25", "--oneshot-gate-on=lower")

    assert run.result.ret == 0
    run.result.assert_outcomes(passed=14, failed=10)
    assert _failed_items(run) == UNSOLVED
    assert all(gate["held"] for gate in run.report["gates"])
    assert _gates(run)[("min_pass_rate", "flaky")]["reason"].endswith(f"lower bound {flaky_low:.4f} >= 0.25")
    run.result.stdout.fnmatch_lines(["oneshot gates: 0 of 3 failed -> exit status 0 *"])


def test_per_model_results_and_comparison(gated: Callable[..., Any], run_and_parse: RunAndParse) -> None:
    """Without a gate option nothing is gated: the 10 failures fail the run, and the report has the models."""
    run = gated(run_and_parse)

    assert run.result.ret == 1 and run.report["gating"] is False and run.report["gates"] == []
    models = {model["model"]: model for model in run.report["models"]}
    steady, flaky = models["steady"], models["flaky"]
    # pass@2 per task (n=4): C(4-c,2)/C(4,2) failing pairs; flaky b (c=2): 1 - 1/6. pass^2: C(c,2)/C(4,2).
    assert flaky["pass_at_k"]["2"] == pytest.approx((1 + (1 - 1 / 6) + 0) / 3, abs=1e-6)
    assert flaky["pass_hat_k"]["2"] == pytest.approx((1 + 1 / 6 + 0) / 3, abs=1e-6)
    assert steady["pass_at_k"]["4"] == pytest.approx(2 / 3, abs=1e-6) and list(steady["pass_at_k"]) == [
        "1",
        "2",
        "3",
        "4",
    ]
    tokens = USAGE.input_tokens + USAGE.output_tokens
    assert steady["tokens"] == {"total": 12 * tokens, "per_solved": 12 * tokens / 8}
    flaky_cost = 12 * (USAGE.input_tokens * 2.0 + USAGE.output_tokens * 20.0) / 1e6
    assert flaky["cost_usd"]["total"] == pytest.approx(flaky_cost) and flaky["cost_usd"]["per_solved"] == pytest.approx(
        flaky_cost / 6
    )
    (comparison,) = run.report["model_comparisons"]
    assert comparison["models"] == ["flaky", "steady"] and comparison["tasks"] == 3
    assert comparison["pass_rate_diff"] == pytest.approx(-0.5 / 3, abs=1e-6)  # per-task differences 0, -0.5, 0
    suites = {suite.get("name"): suite for suite in run.junit.iter("testsuite")}
    props = {prop.get("name"): prop.get("value") for prop in suites["oneshot.model.steady"].iter("property")}
    assert props["oneshot.passed"] == "8" and props["oneshot.pass@4"] == str(steady["pass_at_k"]["4"])
    run.result.stdout.fnmatch_lines(
        [
            _glob("model/agent*pass rate [95% CI]*"),
            _glob("flaky*3*6/12*0.50 [0.25, 0.75]*"),
            "flaky - steady over 3 common tasks*",
        ]
    )


def test_baseline_catches_a_planted_regression_and_passes_an_unchanged_rerun(
    gated: Callable[..., Any], run_and_parse: RunAndParse, pytester: pytest.Pytester
) -> None:
    first = gated(run_and_parse)
    baseline = pytester.path / "baseline.json"
    baseline.write_text(json.dumps(first.report))

    unchanged = gated(run_and_parse, f"--oneshot-baseline={baseline}")

    assert unchanged.result.ret == 0, unchanged.result.stdout.str()
    assert {gate["gate"] for gate in unchanged.report["gates"] if gate["held"]} == {"baseline", "max_errors"}

    # Plant a regression: steady no longer solves task-b (4/4 -> 0/4). Fisher: p = 1/C(8,4) = 1/70, below
    # 0.05/3 (Bonferroni over three tasks); overall the one-task drop is not significant (sign-flip p = 1/2).
    solves = json.loads(json.dumps(SOLVES))
    solves["steady"]["task-b"] = []
    (pytester.path / "solves.json").write_text(json.dumps(solves))

    regressed = gated(run_and_parse, f"--oneshot-baseline={baseline}")

    assert regressed.result.ret == 1
    gates = _gates(regressed)
    assert gates[("baseline", "flaky")]["held"] is True
    steady = gates[("baseline", "steady")]
    assert steady["held"] is False and steady["baseline"]["regressed_tasks"] == ["task-b"]
    assert steady["value"] == pytest.approx(-1 / 3, abs=1e-6)
    row = next(row for row in steady["baseline"]["per_task"] if row["task"] == "task-b")
    assert row["p_value"] == pytest.approx(1 / 70, abs=1e-6)
    regressed.result.stdout.fnmatch_lines(
        [
            "baseline*steady*-0.3333*drop <= 0.0, significant*FAILED",
            "*task-b regressed 4/4 -> 0/4 (Fisher p=0.0143)*",
            "method: per task: one-sided Fisher exact test*",
        ]
    )


def test_an_error_is_never_an_agent_failure_but_fails_the_gate_with_its_reason(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: RunAndParse, tmp_path: Path
) -> None:
    make_task(pytester.path / "tasks" / "fixable")
    gone = tmp_path / "gone"
    make_task(pytester.path / "tasks" / "unreachable", repo={"bundle": None, "git_url": str(gone)})

    run = run_and_parse("tasks", "--oneshot-agent=oracle", "--oneshot-min-pass-rate=1")

    assert run.result.ret == 1
    run.result.assert_outcomes(passed=1, errors=1)
    gates = _gates(run)
    assert gates[("min_pass_rate", "oracle")]["held"] is True, "the error is not counted as a failed attempt"
    assert gates[("min_pass_rate", "oracle")]["value"] == 1.0
    errors = gates[("max_errors", None)]
    assert errors["held"] is False and errors["value"] == 1
    assert errors["errors"] == [
        {
            "nodeid": "tasks/unreachable::unreachable[oracle-r0]",
            "reason": f"prepare: repository unreachable: repo.git_url {gone}: local path does not exist",
        }
    ]
    run.result.stdout.fnmatch_lines(["max_errors (run): 1 errors > 0: tasks/unreachable::* local path does not exist"])

    # The same under xdist: results reach the controller's gates on the reports.
    tolerated = run_and_parse(
        "tasks", "--oneshot-agent=oracle", "--oneshot-min-pass-rate=1", "--oneshot-max-errors=1", "-n", "2"
    )

    assert tolerated.result.ret == 0
    assert [(gate["gate"], gate["value"], gate["held"]) for gate in tolerated.report["gates"]] == [
        ("min_pass_rate", 1.0, True),
        ("max_errors", 1, True),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--oneshot-max-regression=0.1"], "--oneshot-max-regression: needs --oneshot-baseline PATH *"),
        (["--oneshot-gate-on=median"], "--oneshot-gate-on: must be one of lower, mean (got 'median')"),
        (["--oneshot-min-pass-rate=1.5"], "--oneshot-min-pass-rate: must be between 0 and 1 (got '1.5')"),
        (["--oneshot-max-errors=-1"], "--oneshot-max-errors: must be >= 0 (got '-1')"),
        (["--oneshot-baseline=missing.json"], "--oneshot-baseline: */missing.json: cannot read baseline *"),
    ],
)
def test_bad_gate_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_pytest_own_exit_codes_stand_in_gating_mode(pytester: pytest.Pytester) -> None:
    """No tests collected stays 5 (a gate has nothing to hold on); an ini key turns gating on like the option."""
    pytester.makeini("[pytest]\noneshot_min_pass_rate = 0.5\n")
    assert pytester.runpytest().ret == pytest.ExitCode.NO_TESTS_COLLECTED
    pytester.makepyfile(test_plain="def test_broken():\n    assert False\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "a failing non-task test is an error, not forgiven"
    result.stdout.fnmatch_lines(
        ["min_pass_rate (run): no task item ran", "max_errors (run): 1 errors > 0: *test_broken*"]
    )
