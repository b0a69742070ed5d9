"""The run directory: ``runs/<run_id>/<item>/`` with the diff, logs and results of one trial.

Layout (OneShot-compatible names)::

    diff.patch                 the agent's change against the baseline (binary-safe)
    agent/agent.log            what the agent printed (plus agent-specific artifacts)
    tests.log                  output of the hidden-test run
    evaluation_results.json    the full trial result (see TrialResult)
    scoring_results.md         the same, for humans
    judge.json                 with a judge: each judged rubric's request, raw answer and verdict (no key)
    overrides.json             with overrides: the effective overrides, one record per file (secrets redacted)

Every file is written atomically (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from pytest_oneshot.files import write_atomic
from pytest_oneshot.result import TrialResult


def item_dir_name(item_id: str) -> str:
    """``fix-off-by-one[oracle-r0]`` -> ``fix-off-by-one__oracle-r0`` (safe on every filesystem)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id.replace("[", "__").rstrip("]"))


def write_trial_files(run_dir: Path, result: TrialResult, diff: bytes) -> None:
    write_atomic(run_dir / "diff.patch", diff)
    write_atomic(run_dir / "evaluation_results.json", json.dumps(evaluation_results(result), indent=2).encode())
    write_atomic(run_dir / "scoring_results.md", render_markdown(result).encode())
    if result.overrides:
        write_atomic(run_dir / "overrides.json", json.dumps(result.overrides, indent=2).encode())


def write_judge_file(run_dir: Path, record: Mapping[str, object]) -> None:
    write_atomic(run_dir / "judge.json", json.dumps(record, indent=2).encode())


def write_phase_start(run_dir: Path, result: TrialResult, phase: str) -> None:
    """What is known when ``phase`` starts, as an errored result: if the run is killed now, that is its
    verdict, with the phases so far; the end of the trial overwrites it."""
    interrupted = result.model_copy(
        update={"outcome": "error", "reason": f"interrupted: the run stopped during the {phase} phase"}
    )
    write_atomic(run_dir / "evaluation_results.json", json.dumps(evaluation_results(interrupted), indent=2).encode())
    write_atomic(run_dir / "scoring_results.md", render_markdown(interrupted).encode())


def evaluation_results(result: TrialResult) -> dict[str, object]:
    """Our full result plus OneShot's ``evaluation`` block, so its tooling can read the file."""
    data = result.model_dump(mode="json")
    data["evaluation"] = {
        "rubrics": {
            rubric.id: {
                "criterion": rubric.criterion,
                "weight": rubric.weight,
                "score": rubric.score,
                "max_score": 1.0,
                "weighted_score": None if rubric.score is None else rubric.score * rubric.weight,
                "test_count": rubric.test_count,
                "tests_passed": rubric.tests_passed,
                "scored_by": rubric.scored_by,
            }
            for rubric in result.rubrics
        },
        "total_score": result.score,
        "max_score": 1.0,
    }
    judged = [rubric for rubric in result.rubrics if rubric.scored_by == "judge" and rubric.score is not None]
    if judged:  # OneShot's block for its LLM judge (its evidence is one string)
        weight = sum(rubric.weight for rubric in judged)
        data["lm_evaluation"] = {
            "weighted_score": sum((rubric.score or 0.0) * rubric.weight for rubric in judged) / weight,
            "rubric_scores": [
                {
                    "rubric_id": rubric.id,
                    "score": rubric.score,
                    "reasoning": rubric.reasoning,
                    "evidence": "\n".join(rubric.evidence),
                }
                for rubric in judged
            ],
            "metadata": {"model": judged[0].judge_model, "total_weight": weight},
        }
    if result.metric is not None:  # OneShot re-bench's reward entry (re_bench_comparison.json's shape)
        metric = result.metric
        data["reward_types"] = [
            {
                "type": "baseline_delta",
                "subtype": metric.command,
                "value": metric.delta,
                "metadata": {"before": metric.before, "after": metric.after, "direction": metric.direction},
            }
        ]
    return data


def _fmt(score: float | None) -> str:
    return "unscored" if score is None else f"{score:.2f}"


def render_markdown(result: TrialResult) -> str:
    lines = [
        f"# {result.item_id}: {result.outcome}",
        "",
        f"- reason: {result.reason}",
        f"- resolved: {result.resolved}",
        f"- score: {_fmt(result.score)}",
        f"- agent: {result.agent.name} ({result.agent.status}) model: {result.model or '-'}",
        f"- diff: {result.diff_lines} lines, files: {', '.join(result.changed_files) or 'none'}",
    ]
    for path, reason in result.reset_to_start.items():
        lines.append(f"- scored as at the start: `{path}` ({reason})")
    for path, reason in result.left_out.items():
        lines.append(f"- left out of the change: `{path}` ({reason})")
    if result.rubrics:
        lines += ["", "| rubric | weight | score | tests | scored by |", "|---|---|---|---|---|"]
        for rubric in result.rubrics:
            tests = f"{rubric.tests_passed}/{rubric.test_count}"
            by = f"judge ({rubric.judge_model})" if rubric.scored_by == "judge" else rubric.scored_by or "-"
            lines.append(f"| {rubric.id} | {rubric.weight:g} | {_fmt(rubric.score)} | {tests} | {by} |")
        for rubric in result.rubrics:
            if rubric.scored_by == "judge":
                lines += ["", f"**{rubric.id}** (judge {rubric.judge_model}): {rubric.reasoning}"]
                lines += [f"> `{quote}`" for quote in rubric.evidence]
    if result.tests:
        lines += ["", "| test | kind | status |", "|---|---|---|"]
        for test_id, status in result.tests.statuses.items():
            lines.append(f"| `{test_id}` | {result.tests.kinds[test_id]} | {status} |")
    lines += ["", "| phase | seconds |", "|---|---|"]
    lines += [f"| {phase} | {seconds:.2f} |" for phase, seconds in result.phases.items()]
    return "\n".join(lines) + "\n"
