"""Research-bench scoring: a task's metric measured at the start commit and on the agent's change.

Both runs happen in fresh sandboxes the agent never reached (the "before" one on the start tree, the
"after" one on the scored tree, where ``metric.files`` and the output file are kept as at the start).
Before each run the output file is removed, so a value is only ever read from what *this* run
wrote: an output file the agent's change carries, or a stale one, is never read; a workdir that is
not the same directory after the command (renamed away, a new one with a forged output in its place)
makes the run untrusted. The value is the
last ``pattern`` match, the ``json_key`` of the output's JSON, or the last non-empty line, in the
output file or else in the command's output (stdout and stderr, head and tail kept).

The verdict is a one-test :class:`TestRun` (id ``metric``), so the trial's verdict rules apply as
they are: the test passes when the improvement (after - before, negated when lower is better) is
larger than ``min_improvement``, and a run that cannot be trusted (non-zero exit, timeout, no value)
carries a ``problem`` and is never a pass.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pytest_oneshot.logcap import capped_output
from pytest_oneshot.sandbox import Sandbox
from pytest_oneshot.scoring.tests import TestRun
from pytest_oneshot.task_tests import MetricSpec

__all__ = ["METRIC_TEST_ID", "MetricResult", "MetricRun", "metric_outcome", "parse_value", "run_metric"]

METRIC_TEST_ID = "metric"


class MetricRun(BaseModel):
    """One measurement: the value, or why there is none."""

    value: float | None = None
    exit_code: int | None = None
    timed_out: bool = False
    problem: str | None = None


class MetricResult(BaseModel):
    """The task's score: the metric before and after the agent's change, and the difference."""

    command: str
    direction: str
    before: float | None
    after: float | None
    delta: float | None
    """after - before (the score)."""
    improvement: float | None
    """``delta`` when higher is better, ``-delta`` when lower is."""
    min_improvement: float
    improved: bool
    problem: str | None = None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the output is empty")
    return lines[-1]


def parse_value(text: str, metric: MetricSpec, *, from_file: bool) -> float:
    """The metric's value in ``text`` (a file's content, or the command's output).

    Raises:
        ValueError: saying what was looked for and not found.
    """
    raw: Any
    if metric.json_key:
        try:
            raw = json.loads(text if from_file else _last_line(text))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        for part in metric.json_key.split("."):
            if not isinstance(raw, dict) or part not in raw:
                raise ValueError(f"no key {metric.json_key!r} in the JSON")
            raw = raw[part]
    elif metric.pattern:
        matches = re.findall(metric.pattern, text)
        if not matches:
            raise ValueError(f"no match of {metric.pattern!r}")
        raw = matches[-1]
    else:
        raw = _last_line(text)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {str(raw)[:80]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return value


def run_metric(sandbox: Sandbox, metric: MetricSpec, log: Path) -> MetricRun:
    """Run the metric command once in ``sandbox`` (from its workdir) and read its value."""
    if metric.output:
        removed = sandbox.exec(["rm", "-rf", "--", metric.output], timeout=60)
        if not removed.ok:
            return MetricRun(problem=f"could not remove {metric.output} before the run: {removed.text()[-200:]}")
    workdir = _identity(sandbox)
    with capped_output(log) as capped:
        run = sandbox.exec(["bash", "-c", metric.command], timeout=metric.timeout_sec, output=capped)
    if workdir is None or _identity(sandbox) != workdir:  # renamed away under the command, a new one in its place
        return MetricRun(exit_code=run.returncode, problem="the working directory was replaced during the run")
    if run.timed_out:
        return MetricRun(exit_code=run.returncode, timed_out=True, problem=f"timed out after {metric.timeout_sec:g}s")
    if run.returncode != 0:
        return MetricRun(exit_code=run.returncode, problem=f"`{metric.command}` exited {run.returncode}")
    try:
        if metric.output:
            text = sandbox.read_file(metric.output).decode("utf-8", "replace")
        else:
            text = log.read_text(encoding="utf-8", errors="replace")
        value = parse_value(text, metric, from_file=bool(metric.output))
    except (OSError, ValueError) as exc:
        where = metric.output or "its output"
        return MetricRun(exit_code=run.returncode, problem=f"no metric value in {where}: {exc}")
    return MetricRun(value=value, exit_code=run.returncode)


def _identity(sandbox: Sandbox) -> str | None:
    """The workdir's device and inode: the output file is read by path, after the command, from this directory."""
    found = sandbox.exec(["stat", "-c", "%d:%i", "."], timeout=60)
    return found.stdout.decode().strip() if found.ok else None


def metric_outcome(metric: MetricSpec, before: MetricRun, after: MetricRun) -> tuple[TestRun, MetricResult]:
    """The verdict's test run and the score, from the two measurements (``before`` must have a value)."""
    assert before.value is not None
    delta = None if after.value is None else after.value - before.value
    improvement = None if delta is None else (delta if metric.direction == "higher" else -delta)
    improved = after.problem is None and improvement is not None and improvement > metric.min_improvement
    result = MetricResult(
        command=metric.command,
        direction=metric.direction,
        before=before.value,
        after=after.value,
        delta=delta,
        improvement=improvement,
        min_improvement=metric.min_improvement,
        improved=improved,
        problem=after.problem,
    )
    tests = TestRun(
        statuses={METRIC_TEST_ID: "passed" if improved else "failed"},
        kinds={METRIC_TEST_ID: "fail_to_pass"},
        exit_code=after.exit_code,
        selected=[METRIC_TEST_ID],
        timed_out=after.timed_out,
        problem=None if after.problem is None else f"metric after the change: {after.problem}; see metric-after.log",
    )
    return tests, result
