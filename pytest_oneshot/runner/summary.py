"""Codex Runner results: each completion's pass ratio, each question's pass@k, and the CSV with aggregates.

A completion *passes* a question when it passes every testcase; pass@k is the unbiased estimate
(:func:`pytest_oneshot.report.stats.pass_at_k`) from the question's n completions and the c that
pass, for k in 1, 2, 5, 10, 20, 50, 100 up to the largest n, and n itself. The CSV has one row per
question, then ``mean``, ``std`` (sample), ``min`` and ``max`` rows over the questions that have the
value (a question with fewer completions than k has no pass@k).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.files import write_atomic
from pytest_oneshot.report.stats import mean, pass_at_k
from pytest_oneshot.runner.questions import Question

__all__ = ["K_VALUES", "QuestionSummary", "check_results", "csv_text", "summarize", "write_csv"]

K_VALUES = (1, 2, 5, 10, 20, 50, 100)
_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "mean": mean,
    "std": lambda values: statistics.stdev(values) if len(values) > 1 else math.nan,
    "min": min,
    "max": max,
}


@dataclass(frozen=True)
class QuestionSummary:
    id: str
    completions: int
    testcases: int
    pass_ratios: list[float]
    """Each completion's share of passed testcases, in order."""
    passing: int
    """Completions that pass every testcase."""
    pass_at: dict[int, float] = field(default_factory=dict)

    @property
    def mean_pass_ratio(self) -> float | None:
        return mean(self.pass_ratios) if self.pass_ratios else None


def check_results(questions: Sequence[Question], path: Path | str) -> None:
    """Raise naming the first completion whose tests have not run.

    Raises:
        TaskFormatError: ``questions[i].completions[j].results`` is missing.
    """
    for index, question in enumerate(questions):
        for number, completion in enumerate(question.completions):
            if completion.results is None:
                raise TaskFormatError(
                    str(path),
                    f"questions[{index}].completions[{number}].results",
                    "missing: run `oneshot runner run-tests` first",
                )


def _ks(largest: int) -> list[int]:
    ks = [k for k in K_VALUES if k <= largest]
    return [*ks, largest] if largest and largest not in ks else ks


def summarize(question: Question, ks: Sequence[int] | None = None) -> QuestionSummary:
    """The question's figures (its completions' results must be in)."""
    n = len(question.completions)
    ratios = [completion.pass_ratio or 0.0 for completion in question.completions]
    passing = sum(completion.passed for completion in question.completions)
    pass_at = {k: pass_at_k(n, passing, k) for k in (ks if ks is not None else _ks(n)) if 0 < k <= n}
    return QuestionSummary(question.id, n, len(question.testcases), ratios, passing, pass_at)


def _cell(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def csv_text(questions: Sequence[Question]) -> str:
    ks = _ks(max((len(question.completions) for question in questions), default=0))
    summaries = [summarize(question, ks) for question in questions]
    numeric = ["completions", "testcases", "passing", "mean_pass_ratio", *(f"pass@{k}" for k in ks)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "pass_ratios", *numeric])
    columns: dict[str, list[float]] = {name: [] for name in numeric}
    for summary in summaries:
        values: dict[str, float | int | None] = {
            "completions": summary.completions,
            "testcases": summary.testcases,
            "passing": summary.passing,
            "mean_pass_ratio": summary.mean_pass_ratio,
            **{f"pass@{k}": summary.pass_at.get(k) for k in ks},
        }
        for name, value in values.items():
            if value is not None:
                columns[name].append(float(value))
        ratios = " ".join(f"{ratio:.4f}" for ratio in summary.pass_ratios)
        writer.writerow([summary.id, ratios, *(_cell(values[name]) for name in numeric)])
    for label, aggregate in _AGGREGATES.items():
        cells = [_cell(aggregate(columns[name])) if columns[name] else "" for name in numeric]
        writer.writerow([label, "", *cells])
    return buffer.getvalue()


def write_csv(path: Path, questions: Sequence[Question]) -> None:
    write_atomic(path, csv_text(questions).encode("utf-8"))
