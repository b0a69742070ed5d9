"""``--oneshot-concurrency``: trials of upcoming items run at once; pytest still reports in its order."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROLLOUTS = 4

# An agent that applies the reference fix only once ROLLOUTS trials are inside it at the same
# time (a barrier), so the items pass only if their trials really overlap; a barrier that breaks
# (trials one after another) makes it an agent error. It records the order pytest's hooks see.
BARRIER_AGENT = f"""
import json
import threading

from pytest_oneshot.agent import AgentResult

barrier = threading.Barrier({ROLLOUTS}, timeout=60)
hook_calls = []


class TogetherAgent:
    name = "together"
    network = "none"
    uses_model = False

    def __init__(self, options):
        pass

    def mounts(self):
        return {{}}

    def run(self, sandbox, request):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return AgentResult("agent_error", "the trials did not run at the same time")
        applied = sandbox.exec(["git", "apply", "-"], stdin=request.task.reference_patch())
        return AgentResult("completed" if applied.ok else "agent_error", applied.text())


def pytest_oneshot_register(registries):
    registries.agent.register("together", TogetherAgent)


def pytest_oneshot_phase(item, phase, duration):
    hook_calls.append((item.name, phase, threading.current_thread() is threading.main_thread()))


def pytest_oneshot_trial_result(item, result):
    hook_calls.append((item.name, "result", threading.current_thread() is threading.main_thread()))
    with open("hooks.json", "w") as out:
        json.dump(hook_calls, out)
"""
PHASES = ["prepare", "sandbox", "agent", "diff", "tests", "score", "result"]


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["one-process", "one-xdist-worker"])
def test_trials_run_together_and_report_in_order(
    xdist: list[str], shipped_tasks: Path, pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    pytester.makeconftest(BARRIER_AGENT)
    run = run_and_parse(
        "tasks/fix-off-by-one", "--oneshot-agent=together", f"--oneshot-rollouts={ROLLOUTS}",
        f"--oneshot-concurrency={ROLLOUTS}", "-p", "no:randomly", *xdist,
    )  # fmt: skip
    run.result.assert_outcomes(passed=ROLLOUTS)
    names = [f"fix-off-by-one[together-r{rollout}]" for rollout in range(ROLLOUTS)]
    items_suite = run.junit.find("testsuite[@name='pytest']")  # the per-model suites follow it
    assert items_suite is not None and [case.get("name") for case in items_suite.iter("testcase")] == names
    assert [item["item_id"] for item in run.report["items"]] == names
    if not xdist:  # the hooks ran in the worker process otherwise
        hooks = [tuple(call) for call in json.loads((pytester.path / "hooks.json").read_text())]
        for name in names:  # each item's phases in order, from its trial's thread, then its result in pytest's
            assert [(phase, main) for item, phase, main in hooks if item == name] == [
                *((phase, False) for phase in PHASES[:-1]),
                ("result", True),
            ]
        assert [item for item, phase, _ in hooks if phase == "result"] == names


def test_without_concurrency_trials_run_one_at_a_time(
    shipped_tasks: Path, pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    """The control for the barrier: one trial at a time never meets the others."""
    pytester.makeconftest(BARRIER_AGENT.replace("timeout=60", "timeout=2"))
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-agent=together", "--oneshot-rollouts=2")
    run.result.assert_outcomes(failed=2)
    assert {item["outcome"] for item in run.report["items"]} == {"agent_error"}


def test_a_stopped_session_leaves_no_trial_running(
    shipped_tasks: Path, pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    """With -x the first failure stops the session: trials started ahead are stopped with it, and
    their items are not reported."""
    pytester.makeconftest(BARRIER_AGENT.replace("timeout=60", "timeout=2"))
    run = run_and_parse(
        "tasks/fix-off-by-one", "--oneshot-agent=nop", f"--oneshot-rollouts={ROLLOUTS}", "--oneshot-concurrency=2", "-x"
    )
    run.result.assert_outcomes(failed=1)
    assert len(run.report["items"]) == 1


# The first trial, its agent done, waits before its tests until the second trial's agent is done:
# only a gate that lets the next agent in as soon as an agent is done lets it go on.
NEXT_AGENT_CONFTEST = """
import threading

second_agent_done = threading.Event()
waited = []


def pytest_oneshot_phase(item, phase, duration):
    if item.name.endswith("-r1]") and phase == "agent":
        second_agent_done.set()
    if item.name.endswith("-r0]") and phase == "diff":
        waited.append(second_agent_done.wait(timeout=20))


def pytest_sessionfinish(session):
    with open("waited.txt", "w") as out:
        out.write(repr(waited))
"""


def test_the_next_agent_starts_while_a_trial_is_scored(
    shipped_tasks: Path, pytester: pytest.Pytester, run_and_parse: Callable[..., Any]
) -> None:
    """``--oneshot-concurrency`` bounds the agents at once: a trial's tests run beside the next agent,
    so agents waiting on a model leave the CPU to them."""
    pytester.makeconftest(NEXT_AGENT_CONFTEST)
    run = run_and_parse("tasks/fix-off-by-one", "--oneshot-agent=oracle", "--oneshot-rollouts=2", "-p", "no:randomly")
    run.result.assert_outcomes(passed=2)
    assert (pytester.path / "waited.txt").read_text() == "[True]", "the second agent waited for the first's tests"
