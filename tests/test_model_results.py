"""Per-model results, comparisons and the baseline decision on hand-built items, with hand-computed figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.report.baseline import compare, load_baseline
from pytest_oneshot.report.models import model_comparisons, model_results


def _item(
    task: str, model: str, rollout: int, outcome: str, score: float | None = None, **extra: Any
) -> dict[str, Any]:
    tokens = extra.pop("tokens", None)
    return {
        "nodeid": f"tasks/{task}::{task}[{model}-r{rollout}]",
        "task_name": task,
        "model": model,
        "rollout": rollout,
        "outcome": outcome,
        "reason": "" if outcome != "error" else "sandbox: engine unreachable",
        "score": score,
        "agent": {"name": "codex"},
        "tokens": None if tokens is None else {"total_tokens": tokens},
        "cost_usd": extra.pop("cost", None),
        "phases": extra.pop("phases", {"agent": 1.0, "tests": 0.5}),
    }


def _runs(task: str, model: str, outcomes: str, **extra: Any) -> list[dict[str, Any]]:
    """One item per letter: P passed (score 1), F failed (score 0), E error."""
    kinds = {"P": ("passed", 1.0), "F": ("failed", 0.0), "E": ("error", None)}
    return [_item(task, model, i, kinds[c][0], kinds[c][1], **extra) for i, c in enumerate(outcomes)]


def test_model_result_figures_by_hand() -> None:
    items = [
        *_runs("a", "m", "PPPP", tokens=100, cost=0.01),
        *_runs("b", "m", "PFFP", tokens=100, cost=0.01),
        *_runs("c", "m", "FFFE", tokens=100, cost=0.01),
    ]
    (model,) = model_results(items, session_sec=12.5)
    assert (model["tasks"], model["attempts"], model["errors"], model["passed"], model["solved_tasks"]) == (
        3,
        12,
        1,
        6,
        2,
    )
    assert model["pass_rate"] == pytest.approx(6 / 11), "the error is left out, not counted as a failure"
    # pass@k per task (n, c): a (4, 4), b (4, 2), c (3, 0); k runs to 3, the fewest valid attempts.
    # pass@2: a 1, b 1 - C(2,2)/C(4,2) = 5/6, c 0 -> (1 + 5/6) / 3.
    assert model["pass_at_k"] == pytest.approx({"1": (1 + 0.5 + 0) / 3, "2": (1 + 5 / 6) / 3, "3": (1 + 1) / 3})
    # pass^2: a 1, b C(2,2)/C(4,2) = 1/6, c 0.
    assert model["pass_hat_k"] == pytest.approx({"1": 0.5, "2": (1 + 1 / 6) / 3, "3": 1 / 3})
    assert model["mean_score"] == pytest.approx(0.5), "mean over tasks of 1, 0.5 and 0"
    low, high = model["mean_score_ci95"]
    assert 0 <= low < 0.5 < high <= 1
    assert model["tokens"] == {"total": 1200, "per_solved": 200.0}
    assert model["cost_usd"] == {"total": pytest.approx(0.12), "per_solved": pytest.approx(0.02)}
    assert model["wall_sec"] == {"trials": 18.0, "session": 12.5}


def test_unpriced_cost_is_unknown_not_free() -> None:
    items = [*_runs("a", "m", "PP", tokens=10, cost=0.5), _item("a", "m", 2, "passed", 1.0, tokens=10)]
    (model,) = model_results(items, session_sec=1)
    assert model["cost_usd"] == {"total": None, "per_solved": None}
    assert model["tokens"]["per_solved"] == 10.0


def test_two_models_are_compared_paired_over_tasks() -> None:
    items = [*_runs("a", "x", "PP"), *_runs("b", "x", "PF"), *_runs("a", "y", "FF"), *_runs("b", "y", "PF")]
    items += _runs("c", "x", "PP")  # only x ran c: listed, not paired
    (comparison,) = model_comparisons(items)
    assert comparison["models"] == ["x", "y"] and comparison["tasks"] == 2
    assert comparison["only_in"] == {"x": ["c"], "y": []}
    assert comparison["pass_rate_diff"] == pytest.approx(0.5)  # differences 1 and 0
    assert comparison["pass_rate_diff_ci95"] == [0.0, 1.0]
    assert comparison["p_value"] == pytest.approx(1.0), "one nonzero difference: both flips are as extreme"


def _baseline_case(run: dict[str, str], base: dict[str, str], max_regression: float = 0.0) -> dict[str, Any]:
    items = [item for task, outcomes in run.items() for item in _runs(task, "m", outcomes)]
    baseline = [item for task, outcomes in base.items() for item in _runs(task, "m", outcomes)]
    (result,) = compare(items, baseline, max_regression)
    return result


def test_baseline_catches_a_task_that_stopped_passing() -> None:
    result = _baseline_case({"a": "FFFF", "b": "PPPP", "c": "PFPF"}, {"a": "PPPP", "b": "PPPP", "c": "PFPF"})
    assert result["regressed_tasks"] == ["a"] and result["held"] is False
    row = result["per_task"][0]
    assert row["p_value"] == pytest.approx(1 / 70, abs=1e-6) and 1 / 70 < 0.05 / 3  # Fisher, Bonferroni over 3 tasks
    assert result["diff"] == pytest.approx(-1 / 3)
    assert result["p_value"] == pytest.approx(0.5) and result["overall_regressed"] is False  # one task of three


def test_baseline_holds_on_an_unchanged_run_and_on_noise() -> None:
    same = {"a": "PPPP", "b": "PFPF"}
    assert _baseline_case(same, same)["held"] is True
    noisy = _baseline_case({"a": "PPPF", "b": "PFFF"}, {"a": "PPPP", "b": "PFPF"})
    assert noisy["diff"] == pytest.approx(-0.25) and noisy["held"] is True, "a drop no test calls significant"


def test_per_task_tests_are_corrected_for_the_number_of_tasks() -> None:
    """5/5 -> 1/5: Fisher p = C(6,1)C(4,4)/C(10,5) = 6/252, below 0.05 alone but not below 0.05/3."""
    base = {"a": "PPPPP", "b": "PPPPP", "c": "PPPPP"}
    result = _baseline_case({"a": "PFFFF", "b": "PPPPP", "c": "PPPPP"}, base)
    assert result["per_task"][0]["p_value"] == pytest.approx(6 / 252, abs=1e-6)
    assert result["regressed_tasks"] == [] and result["held"] is True


def test_a_task_regression_must_exceed_the_margin() -> None:
    base = {"a": "PPPP", "b": "PP"}
    assert _baseline_case({"a": "FFFF", "b": "PP"}, base, max_regression=0.9)["regressed_tasks"] == ["a"]
    assert _baseline_case({"a": "FFFF", "b": "PP"}, base, max_regression=1.0)["held"] is True, "a drop of 1 is not > 1"


def test_overall_regression_over_many_tasks_and_the_margin() -> None:
    """Eight tasks each solved once of two rollouts, now never: no task alone is significant, all together are."""
    base = {f"t{i}": "PF" for i in range(8)}
    now = {f"t{i}": "FF" for i in range(8)}
    result = _baseline_case(now, base)
    assert result["regressed_tasks"] == [] and result["p_value"] == pytest.approx(1 / 256, abs=1e-6)
    assert result["overall_regressed"] is True and result["held"] is False
    assert _baseline_case(now, base, max_regression=0.5)["held"] is True, "a drop of exactly the margin is tolerated"


def test_missing_tasks_are_reported_on_both_sides() -> None:
    result = _baseline_case({"a": "PP", "new": "PP"}, {"a": "PP", "gone": "PP"})
    assert result["missing_in_run"] == ["gone"] and result["missing_in_baseline"] == ["new"]
    assert result["tasks"] == 1 and result["held"] is True
    nothing = _baseline_case({"a": "PP"}, {"b": "PP"})
    assert nothing["tasks"] == 0 and nothing["held"] is False, "nothing compared is not a pass"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"runs": []}', "items: missing; expected a pytest-oneshot report.json"),
        ('{"items": [{"task_name": "a"}]}', "items[0].model: missing"),
        ('{"items": [{"task_name": "a", "model": 1, "rollout": 0, "outcome": "passed", "agent": {}}]}',
         "items[0].model: wrong type (got 1)"),
    ],
)  # fmt: skip
def test_a_bad_baseline_names_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(OneshotError) as excinfo:
        load_baseline(path)
    assert str(excinfo.value).startswith(f"{path}: ") and message in str(excinfo.value)


def test_a_stored_report_loads_as_baseline(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"items": _runs("a", "m", "PF")}))
    assert [item["outcome"] for item in load_baseline(path)] == ["passed", "failed"]
