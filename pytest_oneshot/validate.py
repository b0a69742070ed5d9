"""Task self-validation: the reference solution must pass, doing nothing must fail.

A task whose oracle fails (a wrong reference diff, hidden tests that cannot pass, an environment that
lacks something) or whose nop passes (hidden tests that never fail, so they grade nothing) scores
every agent wrongly. Both are checked by running the task's own trial with the ``oracle`` and
``nop`` agents: as items under ``--oneshot-validate`` (see :mod:`pytest_oneshot.collect`), or with
``oneshot check TASK`` from the command line. Running the oracle N times flags **flaky**
fail_to_pass tests: ones that pass in some runs and not in others.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneshot_shared.paths import cache_dir
from pytest_oneshot.agent import default_agent_registry
from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.harbor import collected_task, is_harbor_task
from pytest_oneshot.report.rundir import item_dir_name
from pytest_oneshot.result import TrialResult
from pytest_oneshot.sandbox import default_sandbox_registry
from pytest_oneshot.task import load_task
from pytest_oneshot.trial import TrialConfig, run_trial

EXPECTED = {"oracle": "passed", "nop": "failed"}
"""Each validation agent and the outcome a valid task gives it."""


def validation_runs(oracle_runs: int) -> list[tuple[str, int]]:
    """(agent, run) of one task's validation: the oracle ``oracle_runs`` times, nop once."""
    return [*(("oracle", run) for run in range(oracle_runs)), ("nop", 0)]


def item_label(agent: str, run: int) -> str:
    return f"validate-{agent}-r{run}"


def problem(agent: str, outcome: str, reason: str) -> str | None:
    """Why a validation trial shows the task is broken, or None."""
    if outcome == EXPECTED[agent]:
        return None
    if agent == "oracle":
        return f"the reference solution does not pass ({outcome}): {reason}"
    if outcome == "passed":
        return f"the hidden tests pass without any change, so they grade nothing: {reason}"
    return f"nop ended {outcome}, not failed: {reason}"


def flaky_tests(statuses: Iterable[Mapping[str, str]], kinds: Mapping[str, str]) -> list[str]:
    """fail_to_pass tests that passed in some oracle runs and not in others."""
    seen: dict[str, set[bool]] = {}
    for run in statuses:
        for test_id, status in run.items():
            if kinds.get(test_id) == "fail_to_pass":
                seen.setdefault(test_id, set()).add(status == "passed")
    return sorted(test_id for test_id, outcomes in seen.items() if len(outcomes) == 2)


@dataclass
class TaskValidation:
    """One task's validation trials and what they say about it."""

    task: str
    results: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(agent, trial result as JSON) in run order."""

    def problems(self) -> list[str]:
        found = []
        for agent, result in self.results:
            why = problem(agent, result.get("outcome", "error"), result.get("reason", ""))
            if why:
                found.append(f"{agent}: {why}")
        flaky = self.flaky()
        if flaky:
            found.append(f"flaky fail_to_pass tests under the oracle: {', '.join(flaky)}")
        return found

    def flaky(self) -> list[str]:
        oracle = [result.get("tests") or {} for agent, result in self.results if agent == "oracle"]
        kinds: dict[str, str] = next((tests.get("kinds", {}) for tests in oracle if tests), {})
        return flaky_tests((tests.get("statuses", {}) for tests in oracle), kinds)

    def lines(self) -> list[str]:
        """A readable verdict: one line per trial, then the task's verdict."""
        out = [
            f"  {agent:<6} {result.get('outcome', 'error'):<8} {result.get('reason', '')[:160]}"
            for agent, result in self.results
        ]
        problems = self.problems()
        out.append(f"{self.task}: " + ("VALID" if not problems else "INVALID: " + "; ".join(problems)))
        return out


class ValidationSummary:
    """pytest plugin (controller): under ``--oneshot-validate``, each task's verdict after the run."""

    plugin_name = "oneshot-validation"

    def __init__(self) -> None:
        self.tasks: dict[str, TaskValidation] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        result: dict[str, Any] | None = getattr(report, "oneshot", None)
        label = "" if result is None else str(result.get("item_id", "")).rpartition("[")[2].rstrip("]")
        if result is None or not label.startswith("validate-"):
            return
        agent = label.split("-")[1]
        task = result["task_name"]
        self.tasks.setdefault(task, TaskValidation(task)).results.append((agent, result))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tasks:
            return
        terminalreporter.section("oneshot task validation")
        for name in sorted(self.tasks):
            for line in self.tasks[name].lines():
                terminalreporter.write_line(line)


def check_task(
    task_dir: Path, *, sandbox: str, oracle_runs: int, runs_dir: Path, options: Mapping[str, str]
) -> TaskValidation:
    """Run the task's validation trials one after the other (``oneshot check``)."""
    cache = Path(options.get("cache_dir") or cache_dir())
    task = collected_task(task_dir, cache) if is_harbor_task(task_dir) else load_task(task_dir)
    factory = default_sandbox_registry().get(sandbox)
    agents = default_agent_registry()
    run_id = time.strftime("%Y%m%d-%H%M%S-check")
    validation = TaskValidation(task.name)
    for agent_name, run in validation_runs(oracle_runs):
        item_id = f"{task.name}[{item_label(agent_name, run)}]"
        config = TrialConfig(
            task=task,
            agent=agents.get(agent_name)({}),
            sandbox_factory=factory,
            item_id=item_id,
            run_id=run_id,
            run_dir=runs_dir / run_id / item_dir_name(item_id),
            cache_dir=cache,
            sandbox_options=options,
        )
        result: TrialResult = run_trial(config)
        validation.results.append((agent_name, result.model_dump(mode="json")))
        print(validation.lines()[len(validation.results) - 1], flush=True)
    return validation


def _check(args: argparse.Namespace) -> int:
    options = {"docker_image": args.docker_image, "cache_dir": str(cache_dir())}
    valid = True
    for task_dir in args.tasks:
        print(f"{task_dir}: oracle x{args.runs}, nop x1 in the {args.sandbox} sandbox", flush=True)
        try:
            validation = check_task(
                task_dir, sandbox=args.sandbox, oracle_runs=args.runs, runs_dir=args.runs_dir, options=options
            )
        except TaskFormatError as exc:
            print(f"{task_dir}: INVALID: {exc}")
            valid = False
            continue
        print(validation.lines()[-1], flush=True)
        valid = valid and not validation.problems()
    return 0 if valid else 1


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate tasks: the oracle must pass, nop must fail",
        description="Run each task with the oracle (its reference diff; must pass, N times: a fail_to_pass test "
        "that passes only sometimes is flaky) and with nop (no change; must fail). Exit 0 when every task is valid.",
    )
    parser.add_argument("tasks", nargs="+", type=Path, metavar="TASK", help="task directories (ours or Harbor's)")
    parser.add_argument("--sandbox", default="local", metavar="NAME", help="sandbox (default: local)")
    parser.add_argument("--runs", type=_positive, default=1, metavar="N", help="oracle runs (default: 1)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), metavar="DIR", help="default: runs")
    parser.add_argument("--docker-image", default="", metavar="IMAGE", help="base image for the docker sandbox")
    parser.set_defaults(func=_check)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return number
