"""Gates: in gating mode the whole run's results, not single items, decide pytest's exit status.

Any of ``--oneshot-min-pass-rate``, ``--oneshot-min-mean-score``, ``--oneshot-baseline`` or
``--oneshot-max-errors`` turns gating on. Items keep their verdicts (a failed task is still a
failure in the terminal and in JUnit, so dashboards show it); then, at session finish on the
controller, each gate is measured and the exit status becomes 0 when every gate holds and 1 when
one fails. pytest's other codes (interrupted, internal or usage error, no tests collected) stay,
and so does a session stopped early (``-x``, ``--maxfail``): gates judge complete runs only.

Errors (an item's outcome ``error``, a collection error, a failing non-task test) are never
agent failures: they are left out of rates and scores, and any of them fails the ``max_errors``
gate (default 0) with its reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_oneshot.report.baseline import compare
from pytest_oneshot.report.models import Item
from pytest_oneshot.report.session import SessionReport, write_table
from pytest_oneshot.settings import OneshotSettings

PASS_RATE_METHOD = "pass rate over all valid attempts, 95% Wilson score interval"
SCORE_METHOD = "mean over tasks of each task's mean rubric score, 95% percentile bootstrap over tasks"
_SHOWN_ERRORS = 10


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def _threshold_gate(
    gate: str, model: dict[str, Any], what: str, method: str, threshold: float, on: str
) -> dict[str, Any]:
    """``model[what]`` (or its interval's lower bound) against ``threshold``."""
    value, interval = model[what], model[f"{what}_ci95"]
    name = what.replace("_", " ")
    entry = {"gate": gate, "model": model["model"], "threshold": threshold, "on": on, "value": value, "ci95": interval}
    if value is None or interval is None:
        return {**entry, "held": False, "method": method, "reason": f"{name}: nothing to measure (no valid item)"}
    judged = interval[0] if on == "lower" else value
    held = judged >= threshold
    measured = f"{name} {value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"
    judged_as = "lower bound" if on == "lower" else "mean"
    reason = f"{measured}: {judged_as} {judged:.4f} {'>=' if held else '<'} {threshold}"
    return {**entry, "held": held, "method": method, "reason": reason}


def _baseline_gate(comparison: dict[str, Any], max_regression: float) -> dict[str, Any]:
    parts = []
    if comparison["tasks"] == 0:
        parts.append("no task in common with the baseline")
    else:
        parts.append(
            f"pass rate {comparison['pass_rate']:.4f} vs baseline {comparison['baseline_pass_rate']:.4f} over "
            f"{comparison['tasks']} tasks: diff {comparison['diff']:+.4f} [{comparison['diff_ci95'][0]:+.4f}, "
            f"{comparison['diff_ci95'][1]:+.4f}], sign-flip p={comparison['p_value']:.4f}"
        )
    for row in comparison["per_task"]:
        if row["regressed"]:
            parts.append(
                f"{row['task']} regressed {row['base_passed']}/{row['base_attempts']} -> "
                f"{row['passed']}/{row['attempts']} (Fisher p={row['p_value']:.4f})"
            )
    for key, label in (("missing_in_run", "not in this run"), ("missing_in_baseline", "not in the baseline")):
        if comparison[key]:
            parts.append(f"{label}: {', '.join(comparison[key])}")
    return {
        "gate": "baseline",
        "model": comparison["model"],
        "threshold": max_regression,
        "on": None,
        "value": comparison["diff"],
        "ci95": comparison["diff_ci95"],
        "held": comparison["held"],
        "method": comparison["test"],
        "reason": "; ".join(parts),
        "baseline": comparison,
    }


def _errors_gate(errors: list[dict[str, str]], limit: int) -> dict[str, Any]:
    held = len(errors) <= limit
    shown = "; ".join(f"{error['nodeid']}: {error['reason']}" for error in errors[:_SHOWN_ERRORS])
    more = f"; and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
    reason = f"{len(errors)} errors {'<=' if held else '>'} {limit}" + (f": {shown}{more}" if errors else "")
    return {
        "gate": "max_errors",
        "model": None,
        "threshold": limit,
        "on": None,
        "value": len(errors),
        "ci95": None,
        "held": held,
        "method": "items with outcome error, collection errors and failing non-task tests; never agent failures",
        "reason": reason,
        "errors": errors,
    }


def evaluate(
    settings: OneshotSettings,
    models: list[dict[str, Any]],
    items: list[Item],
    baseline: list[Item] | None,
    errors: list[dict[str, str]],
) -> list[dict[str, Any]]:
    """Every gate that is set, one entry per model (the error gate: one for the run)."""
    gates: list[dict[str, Any]] = []
    nothing_ran = {"model": None, "value": None, "ci95": None, "held": False, "reason": "no task item ran"}
    for gate, what, method, threshold in (
        ("min_pass_rate", "pass_rate", PASS_RATE_METHOD, settings.min_pass_rate),
        ("min_mean_score", "mean_score", SCORE_METHOD, settings.min_mean_score),
    ):
        if threshold is None:
            continue
        gates += [_threshold_gate(gate, model, what, method, threshold, settings.gate_on) for model in models]
        if not models:
            gates.append(
                {"gate": gate, "threshold": threshold, "on": settings.gate_on, "method": method, **nothing_ran}
            )
    if baseline is not None:
        comparisons = compare(items, baseline, settings.max_regression)
        gates += [_baseline_gate(comparison, settings.max_regression) for comparison in comparisons]
        if not comparisons:
            gates.append({"gate": "baseline", "threshold": settings.max_regression, "on": None, **nothing_ran})
    errors = [
        *({"nodeid": item["nodeid"], "reason": item["reason"]} for item in items if item["outcome"] == "error"),
        *errors,
    ]
    gates.append(_errors_gate(errors, settings.max_errors or 0))
    return gates


class SessionGates:
    """Controller only, gating mode only: measures the gates and sets the session's exit status."""

    plugin_name = "oneshot-gates"

    def __init__(self, settings: OneshotSettings, report: SessionReport, baseline: list[Item] | None) -> None:
        self.settings = settings
        self.report = report
        self.baseline = baseline
        self.errors: list[dict[str, str]] = []
        """Errors that are not task items: collection errors, failing non-task tests."""
        self.decided: int | None = None
        """The exit status the gates set (None: pytest's own code was kept)."""

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append({"nodeid": report.nodeid or "collection", "reason": _first_line(report.longreprtext)})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and getattr(report, "oneshot", None) is None:
            self.errors.append(
                {"nodeid": report.nodeid, "reason": f"{report.when}: {_first_line(report.longreprtext)}"}
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before the reports are written (they include the gates) and the summary is printed."""
        items = list(self.report.items.values())
        self.report.gates = evaluate(self.settings, self.report.models()[0], items, self.baseline, self.errors)
        stopped_early = bool(session.shouldstop or session.shouldfail)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not stopped_early:
            held = all(gate["held"] for gate in self.report.gates)
            session.exitstatus = pytest.ExitCode.OK if held else pytest.ExitCode.TESTS_FAILED
            self.decided = int(session.exitstatus)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        gates = self.report.gates
        terminalreporter.section("oneshot gates")
        write_table(
            terminalreporter,
            ("gate", "model", "value [95% CI]", "threshold", "result"),
            [_gate_row(gate) for gate in gates],
        )
        for gate in gates:
            terminalreporter.write_line(f"{gate['gate']} {gate['model'] or '(run)'}: {gate['reason']}")
        for method in dict.fromkeys(gate["method"] for gate in gates if gate.get("method")):
            terminalreporter.write_line(f"method: {method}")
        failed = sum(1 for gate in gates if not gate["held"])
        if self.decided is None:
            verdict = "the session stopped early or pytest failed: its own exit status stands"
        else:
            verdict = f"exit status {self.decided} (item failures above are reported; the gates decide)"
        terminalreporter.write_line(f"oneshot gates: {failed} of {len(gates)} failed -> {verdict}")


def _gate_row(gate: dict[str, Any]) -> tuple[str, ...]:
    value, interval = gate["value"], gate["ci95"]
    if value is None:
        measured = "-"
    elif isinstance(value, int):
        measured = str(value)
    else:
        measured = f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
    threshold = {
        "min_pass_rate": f">= {gate['threshold']} ({gate['on']})",
        "min_mean_score": f">= {gate['threshold']} ({gate['on']})",
        "baseline": f"drop <= {gate['threshold']}, significant",
        "max_errors": f"<= {gate['threshold']}",
    }[gate["gate"]]
    return (gate["gate"], gate["model"] or "(run)", measured, threshold, "held" if gate["held"] else "FAILED")
