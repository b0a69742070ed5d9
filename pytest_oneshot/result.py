"""What a trial found: the value every report (run dir, JSON, JUnit, terminal) is a view of.

Plain data (pydantic, for its JSON form) below the trial that fills it in and the reports that read
it, so neither needs the other to name it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from pytest_oneshot.scoring.metric import MetricResult
from pytest_oneshot.scoring.rubric import RubricScore
from pytest_oneshot.scoring.tests import TestRun

__all__ = ["AgentSummary", "Outcome", "TrialResult"]

Outcome = Literal["passed", "failed", "timeout", "agent_error", "token_limit", "error"]


class AgentSummary(BaseModel):
    name: str
    status: str | None = None
    message: str = ""
    exit_code: int | None = None
    usage: dict[str, int] | None = None


class TrialResult(BaseModel):
    """Everything a trial found; the JSON report and JUnit properties are views of it."""

    task_id: str
    task_name: str
    item_id: str
    run_id: str
    model: str | None
    rollout: int
    outcome: Outcome = "error"
    reason: str = ""
    resolved: bool | None = None
    score: float | None = None
    min_score: float | None = None
    rubrics: list[RubricScore] = []
    tests: TestRun | None = None
    metric: MetricResult | None = None
    """A research-bench task's score: its metric before and after the change (``delta``)."""
    agent: AgentSummary
    diff_bytes: int = 0
    diff_lines: int = 0
    changed_files: list[str] = []
    left_out: dict[str, str] = {}
    """Files the agent touched that are not part of its change (too big, not a regular file), and why."""
    reset_to_start: dict[str, str] = {}
    """Paths the agent changed that were scored as at the start (test infrastructure), and why."""
    phases: dict[str, float] = {}
    run_dir: str = ""
    model_requests: int | None = None
    """Requests the agent sent through the model gateway (None: the agent uses no model)."""
    tokens: dict[str, int] | None = None
    """Tokens as the model gateway counted them from the upstream's answers (authoritative)."""
    tokens_agree: bool | None = None
    """Whether the agent's own count (``agent.usage``) equals ``tokens``; None if it reported none."""
    cost_usd: float | None = None
    """``tokens`` at the model's list price; None when the price (or the token count) is unknown."""
    trace: str | None = None
    """The trial's recorded model traffic in the run dir (``--oneshot-trace``)."""
    trace_complete: bool | None = None
    """Whether every request was recorded before the trace was written."""
    overrides: list[dict[str, Any]] | None = None
    """The effective overrides applied to the task, one record per file (see pytest_oneshot/overrides.py)."""
