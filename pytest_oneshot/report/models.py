"""Results per model over the whole task set, and paired comparisons between models.

Input is the report's item dicts (``TrialResult`` as JSON), so the same code reads a live session
and a stored report.json (the baseline). A model is ``--oneshot-model``, or the agent's name for
agents without one. Errors are infrastructure problems, never the agent's: they are counted, and
left out of every rate and score.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any

from pytest_oneshot.report.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_mean_ci,
    mean,
    pass_at_k,
    pass_hat_k,
    sign_flip_p_value,
    wilson_interval,
)

Item = dict[str, Any]

BOOTSTRAP_NOTE = f"percentile bootstrap over tasks ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})"
COMPARISON_TEST = (
    "paired over common tasks: mean difference of per-task pass rates, "
    + BOOTSTRAP_NOTE
    + ", two-sided sign-flip permutation test"
)


def model_of(item: Item) -> str:
    return str(item["model"] or item["agent"]["name"])


def by_model(items: list[Item]) -> dict[str, dict[str, list[Item]]]:
    """model -> task name -> its items, both sorted."""
    groups: dict[str, dict[str, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        groups[model_of(item)][item["task_name"]].append(item)
    return {model: dict(sorted(tasks.items())) for model, tasks in sorted(groups.items())}


def valid(runs: list[Item]) -> list[Item]:
    """The attempts that count: every outcome but ``error``."""
    return [run for run in runs if run["outcome"] != "error"]


def passes(runs: list[Item]) -> int:
    return sum(1 for run in runs if run["outcome"] == "passed")


def task_pass_rates(tasks: dict[str, list[Item]]) -> dict[str, float]:
    """Per-task pass rate over its valid attempts (tasks with none are left out)."""
    return {task: passes(runs) / len(valid(runs)) for task, runs in tasks.items() if valid(runs)}


def task_scores(tasks: dict[str, list[Item]]) -> dict[str, float]:
    """Per-task mean score over its scored valid attempts (tasks with none are left out)."""
    scores = {task: [run["score"] for run in valid(runs) if run["score"] is not None] for task, runs in tasks.items()}
    return {task: mean(values) for task, values in scores.items() if values}


def spend(runs: list[Item]) -> tuple[int | None, float | None]:
    """(total tokens, total cost) of the runs whose tokens were counted; cost None if any is unpriced."""
    counted = [run for run in runs if run["tokens"] is not None]
    if not counted:
        return None, None
    tokens = sum(run["tokens"]["total_tokens"] for run in counted)
    costs = [run["cost_usd"] for run in counted]
    return tokens, None if None in costs else round(sum(costs), 8)


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(interval[0], 4), round(interval[1], 4)]


def _per(total: float | None, count: int, digits: int) -> float | None:
    return None if total is None or count == 0 else round(total / count, digits)


def _at_k(tasks: dict[str, list[Item]], estimator: Any) -> dict[str, float]:
    """``estimator(n, c, k)`` averaged over tasks for every k up to the fewest valid attempts of a task."""
    counts = [(len(valid(runs)), passes(runs)) for runs in tasks.values() if valid(runs)]
    if not counts:
        return {}
    return {
        str(k): round(mean([estimator(n, c, k) for n, c in counts]), 6) for k in range(1, min(n for n, _ in counts) + 1)
    }


def model_result(model: str, tasks: dict[str, list[Item]], session_sec: float) -> dict[str, Any]:
    """One model over its task set (the report's ``models`` entry)."""
    runs = [run for task_runs in tasks.values() for run in task_runs]
    counted = valid(runs)
    passed = passes(runs)
    scores = task_scores(tasks)
    tokens, cost = spend(runs)
    return {
        "model": model,
        "agents": sorted({run["agent"]["name"] for run in runs}),
        "tasks": len(tasks),
        "attempts": len(runs),
        "errors": len(runs) - len(counted),
        "passed": passed,
        "solved_tasks": sum(1 for task_runs in tasks.values() if passes(task_runs)),
        "pass_rate": round(passed / len(counted), 6) if counted else None,
        "pass_rate_ci95": _rounded(wilson_interval(passed, len(counted))),
        "pass_at_k": _at_k(tasks, pass_at_k),
        "pass_hat_k": _at_k(tasks, pass_hat_k),
        "mean_score": round(mean(list(scores.values())), 6) if scores else None,
        "mean_score_ci95": _rounded(bootstrap_mean_ci(list(scores.values()))) if scores else None,
        "scored_tasks": len(scores),
        "tokens": {"total": tokens, "per_solved": _per(tokens, passed, 1)},
        "cost_usd": {"total": cost, "per_solved": _per(cost, passed, 8)},
        "wall_sec": {
            "trials": round(sum(sum(run["phases"].values()) for run in runs), 3),
            "session": round(session_sec, 3),
        },
    }


def model_results(items: list[Item], session_sec: float) -> list[dict[str, Any]]:
    return [model_result(model, tasks, session_sec) for model, tasks in by_model(items).items()]


def _paired(first: dict[str, float], second: dict[str, float]) -> list[float]:
    return [first[task] - second[task] for task in sorted(first.keys() & second.keys())]


def model_comparisons(items: list[Item]) -> list[dict[str, Any]]:
    """Each pair of models, paired over the tasks both ran: ``a - b`` with its interval and p-value."""
    groups = by_model(items)
    comparisons = []
    for a, b in combinations(groups, 2):
        rates_a, rates_b = task_pass_rates(groups[a]), task_pass_rates(groups[b])
        diffs = _paired(rates_a, rates_b)
        score_diffs = _paired(task_scores(groups[a]), task_scores(groups[b]))
        comparisons.append(
            {
                "models": [a, b],
                "tasks": len(diffs),
                "only_in": {a: sorted(rates_a.keys() - rates_b.keys()), b: sorted(rates_b.keys() - rates_a.keys())},
                "pass_rate_diff": round(mean(diffs), 6) if diffs else None,
                "pass_rate_diff_ci95": _rounded(bootstrap_mean_ci(diffs)) if diffs else None,
                "p_value": round(sign_flip_p_value(diffs, two_sided=True), 6) if diffs else None,
                "mean_score_diff": round(mean(score_diffs), 6) if score_diffs else None,
                "mean_score_diff_ci95": _rounded(bootstrap_mean_ci(score_diffs)) if score_diffs else None,
                "test": COMPARISON_TEST,
            }
        )
    return comparisons
