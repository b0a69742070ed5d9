"""Compare a run with a stored report.json (``--oneshot-baseline``): did a model get worse?

Items are matched by task name and model (the agent's name for model-free agents). A difference
of means would call noise a regression, so each decision is a one-sided test at 5%:

- per task, Fisher's exact test on the 2x2 table (passes and failures of the run's rollouts
  against the baseline's), Bonferroni-corrected over the model's tasks;
- overall, the per-task pass-rate differences, paired over the tasks both sides ran, with an
  exact sign-flip permutation test (a paired bootstrap gives the interval).

A regression must also be larger than ``max_regression`` (in pass-rate points) to fail the gate.
Tasks found on one side only are listed, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.report.models import (
    BOOTSTRAP_NOTE,
    Item,
    by_model,
    passes,
    task_pass_rates,
    valid,
)
from pytest_oneshot.report.stats import bootstrap_mean_ci, fisher_exact_less, mean, sign_flip_p_value

ALPHA = 0.05
BASELINE_TEST = (
    "per task: one-sided Fisher exact test on the 2x2 table of passes over rollouts, Bonferroni-corrected over "
    "tasks; overall: paired over common tasks, one-sided sign-flip permutation test on per-task pass-rate "
    f"differences, {BOOTSTRAP_NOTE}; alpha {ALPHA}"
)
_ITEM_FIELDS: dict[str, type | tuple[type, ...]] = {
    "task_name": str,
    "model": (str, type(None)),
    "rollout": int,
    "outcome": str,
    "agent": dict,
}


def load_baseline(path: Path) -> list[Item]:
    """The items of a stored report.json.

    Raises:
        OneshotError: unreadable, not JSON, or an item without the fields compared
            (``<path>: items[3].outcome: missing``).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OneshotError(f"{path}: cannot read baseline ({exc.strerror})") from None
    except ValueError as exc:
        raise OneshotError(f"{path}: not valid JSON ({exc})") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise OneshotError(f"{path}: items: missing; expected a pytest-oneshot report.json")
    for index, item in enumerate(items):
        for field, kind in _ITEM_FIELDS.items():
            if not isinstance(item, dict) or field not in item:
                raise OneshotError(f"{path}: items[{index}].{field}: missing")
            if not isinstance(item[field], kind):
                raise OneshotError(f"{path}: items[{index}].{field}: wrong type (got {item[field]!r})")
        if not isinstance(item["agent"].get("name"), str):
            raise OneshotError(f"{path}: items[{index}].agent.name: missing")
    return items


def _task_row(task: str, runs: list[Item], base_runs: list[Item], tasks: int, max_regression: float) -> dict[str, Any]:
    counted, base_counted = valid(runs), valid(base_runs)
    passed, base_passed = passes(runs), passes(base_runs)
    diff = passed / len(counted) - base_passed / len(base_counted)
    p_value = fisher_exact_less(passed, len(counted), base_passed, len(base_counted))
    return {
        "task": task,
        "passed": passed,
        "attempts": len(counted),
        "base_passed": base_passed,
        "base_attempts": len(base_counted),
        "diff": round(diff, 6),
        "p_value": round(p_value, 6),
        "regressed": diff < -max_regression and p_value < ALPHA / tasks,
    }


def compare_model(
    model: str, tasks: dict[str, list[Item]], base_tasks: dict[str, list[Item]], max_regression: float
) -> dict[str, Any]:
    """One model against its baseline; ``held`` is False on a significant regression beyond the margin."""
    rates, base_rates = task_pass_rates(tasks), task_pass_rates(base_tasks)
    common = sorted(rates.keys() & base_rates.keys())
    rows = [_task_row(task, tasks[task], base_tasks[task], len(common), max_regression) for task in common]
    diffs = [rates[task] - base_rates[task] for task in common]
    result: dict[str, Any] = {
        "model": model,
        "tasks": len(common),
        "missing_in_run": sorted(base_tasks.keys() - tasks.keys()),
        "missing_in_baseline": sorted(tasks.keys() - base_tasks.keys()),
        "no_valid_attempt": sorted((tasks.keys() & base_tasks.keys()) - set(common)),
        "pass_rate": round(mean([rates[task] for task in common]), 6) if common else None,
        "baseline_pass_rate": round(mean([base_rates[task] for task in common]), 6) if common else None,
        "diff": None,
        "diff_ci95": None,
        "p_value": None,
        "overall_regressed": None,
        "per_task": rows,
        "regressed_tasks": [row["task"] for row in rows if row["regressed"]],
        "held": False,
        "test": BASELINE_TEST,
    }
    if not common:
        return result
    diff, p_value = mean(diffs), sign_flip_p_value(diffs)
    low, high = bootstrap_mean_ci(diffs)
    overall_regressed = diff < -max_regression and p_value < ALPHA
    result.update(
        diff=round(diff, 6),
        diff_ci95=[round(low, 4), round(high, 4)],
        p_value=round(p_value, 6),
        overall_regressed=overall_regressed,
        held=not overall_regressed and not result["regressed_tasks"],
    )
    return result


def compare(items: list[Item], baseline: list[Item], max_regression: float) -> list[dict[str, Any]]:
    """Every model of the run against the baseline's items of the same model."""
    base_groups = by_model(baseline)
    return [
        compare_model(model, tasks, base_groups.get(model, {}), max_regression)
        for model, tasks in by_model(items).items()
    ]
