"""The session report (controller only): JSON of every item, aggregates, terminal table.

Results arrive on ``report.oneshot`` in ``pytest_runtest_logreport``, so this works the
same with pytest-xdist workers as in a single process.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.files import write_atomic
from pytest_oneshot.report.html import write_html
from pytest_oneshot.report.junit import append_model_suites
from pytest_oneshot.report.models import model_comparisons, model_results, spend
from pytest_oneshot.report.resume import finished_items
from pytest_oneshot.report.stats import pass_at_k, wilson_interval
from pytest_oneshot.settings import OneshotSettings


def aggregate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, model): attempts, passes, pass@1/pass@n with CI, mean score, tokens, cost."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[(item["task_name"], item["model"] or item["agent"]["name"])].append(item)
    rows = []
    for (task, model), runs in sorted(groups.items()):
        n = len(runs)
        passed = sum(1 for run in runs if run["outcome"] == "passed")
        scores = [run["score"] for run in runs if run["score"] is not None]
        low, high = wilson_interval(passed, n)
        tokens, cost = spend(runs)
        rows.append(
            {
                "task": task,
                "model": model,
                "attempts": n,
                "passed": passed,
                "errors": sum(1 for run in runs if run["outcome"] == "error"),
                "pass@1": passed / n,
                f"pass@{n}": pass_at_k(n, passed, n),
                "pass_rate_ci95": [round(low, 4), round(high, 4)],
                "mean_score": sum(scores) / len(scores) if scores else None,
                "outcomes": sorted({run["outcome"] for run in runs}),
                "total_tokens": tokens,
                "cost_usd": cost,
            }
        )
    return rows


def _cost(row: dict[str, Any]) -> str:
    if row["cost_usd"] is not None:
        return f"${row['cost_usd']:.4f}"
    return "-" if row["total_tokens"] is None else "unknown"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(value: float | None, interval: list[float] | None) -> str:
    if value is None or interval is None:
        return "-"
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _money(value: float | None, tokens: int | None) -> str:
    if value is not None:
        return f"${value:.4f}"
    return "-" if tokens is None else "unknown"


def write_table(terminalreporter: Any, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Left-aligned columns as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        terminalreporter.write_line(
            "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _model_row(model: dict[str, Any]) -> tuple[Any, ...]:
    tokens, cost = model["tokens"], model["cost_usd"]
    return (
        model["model"],
        model["tasks"],
        f"{model['passed']}/{model['attempts'] - model['errors']}",
        _interval(model["pass_rate"], model["pass_rate_ci95"]),
        " ".join(f"{k}:{value:.2f}" for k, value in model["pass_at_k"].items()) or "-",
        " ".join(f"{k}:{value:.2f}" for k, value in model["pass_hat_k"].items()) or "-",
        _interval(model["mean_score"], model["mean_score_ci95"]),
        model["errors"],
        "-" if tokens["total"] is None else f"{tokens['total']} ({_num(tokens['per_solved'], 0)})",
        f"{_money(cost['total'], tokens['total'])} ({_money(cost['per_solved'], tokens['total'])})",
        f"{model['wall_sec']['trials']:.1f}",
    )


class SessionReport:
    plugin_name = "oneshot-session-report"

    def __init__(self, config: pytest.Config, settings: OneshotSettings) -> None:
        self.config = config
        self.settings = settings
        self.items: dict[str, dict[str, Any]] = {}
        """Keyed by item id (one run dir each). A resumed run starts from the finished items it
        recorded, so the report covers them even when this session does not collect them."""
        if settings.resume is not None:
            for finished in finished_items(settings.resume):
                result = finished.result.model_dump(mode="json")
                self.items[finished.result.item_id] = {"nodeid": finished.nodeid, **result, "resumed": True}
        self.started = time.time()
        self.gates: list[dict[str, Any]] = []
        """Filled in by the gates plugin at session finish (gating mode only)."""
        self._models: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = getattr(report, "oneshot", None)
        if result is not None:
            self.items[result["item_id"]] = {"nodeid": report.nodeid, **result}

    def models(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(per-model results, pairwise comparisons), computed once when the session finishes."""
        if self._models is None:
            items = list(self.items.values())
            self._models = (model_results(items, time.time() - self.started), model_comparisons(items))
        return self._models

    def document(self) -> dict[str, Any]:
        items = list(self.items.values())
        models, comparisons = self.models()
        return {
            "run_id": self.settings.run_id,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_sec": round(time.time() - self.started, 3),
            "settings": self.settings.model_dump(mode="json"),
            "summary": aggregate(items),
            "models": models,
            "model_comparisons": comparisons,
            "gating": self.settings.gating,
            "gates": self.gates,
            "items": items,
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """After junitxml wrote its file (trylast): report.json, and the per-model suites in the JUnit file."""
        if not self.items:
            return
        document = self.document()
        run_dir = self.settings.runs_dir / self.settings.run_id
        data = json.dumps(document, indent=2).encode()
        write_atomic(run_dir / "report.json", data)
        if self.settings.json_path:
            write_atomic(self.settings.json_path, data)
        xml_path = self.config.getoption("xmlpath", None)
        if xml_path and Path(xml_path).is_file():
            append_model_suites(Path(xml_path), self.models()[0], self.gates)
        for page in (run_dir / "report.html", self.settings.html_path):
            if page is not None:
                write_html(document, page)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.items:
            return
        rows = aggregate(list(self.items.values()))
        terminalreporter.section("oneshot results")
        header = ("task", "model/agent", "passed", "outcomes", "mean score", "tokens", "cost")
        write_table(
            terminalreporter,
            header,
            [
                (
                    row["task"],
                    row["model"],
                    f"{row['passed']}/{row['attempts']}",
                    ",".join(row["outcomes"]),
                    "unscored" if row["mean_score"] is None else f"{row['mean_score']:.2f}",
                    "-" if row["total_tokens"] is None else row["total_tokens"],
                    _cost(row),
                )
                for row in rows
            ],
        )
        models, comparisons = self.models()
        terminalreporter.write_line("")
        write_table(
            terminalreporter,
            ("model/agent", "tasks", "passed", "pass rate [95% CI]", "pass@k", "pass^k", "mean score [95% CI]",
             "errors", "tokens (per solved)", "cost (per solved)", "trial sec"),
            [_model_row(model) for model in models],
        )  # fmt: skip
        for comparison in comparisons:
            a, b = comparison["models"]
            terminalreporter.write_line(
                f"{a} - {b} over {comparison['tasks']} common tasks: pass rate "
                f"{_interval(comparison['pass_rate_diff'], comparison['pass_rate_diff_ci95'])} "
                f"(p={_num(comparison['p_value'], 3)}), mean score "
                f"{_interval(comparison['mean_score_diff'], comparison['mean_score_diff_ci95'])}"
            )
        if comparisons:
            terminalreporter.write_line(f"comparisons: {comparisons[0]['test']}")
        terminalreporter.write_line(f"run dir: {self.settings.runs_dir / self.settings.run_id}")
        if resumed := sum(bool(item.get("resumed")) for item in self.items.values()):
            terminalreporter.write_line(f"resumed: {resumed} of {len(self.items)} items finished earlier, not rerun")
        if self.settings.json_path:
            terminalreporter.write_line(f"json report: {self.settings.json_path}")
        if self.settings.html_path:
            terminalreporter.write_line(f"html report: {self.settings.html_path}")
