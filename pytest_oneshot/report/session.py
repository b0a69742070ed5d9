"""The session report (controller only): JSON of every item, aggregates, terminal table.

Results arrive on ``report.oneshot`` in ``pytest_runtest_logreport``, so this works the
same with pytest-xdist workers as in a single process.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any

import pytest

from pytest_oneshot.files import write_atomic
from pytest_oneshot.report.html import write_html
from pytest_oneshot.report.resume import finished_items
from pytest_oneshot.settings import OneshotSettings


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n attempts with c successes (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a pass rate; honest with few rollouts."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _spend(runs: list[dict[str, Any]]) -> tuple[int | None, float | None]:
    """(total tokens, total cost) of the runs whose tokens were counted; cost None if any is unpriced."""
    counted = [run for run in runs if run["tokens"] is not None]
    if not counted:
        return None, None
    tokens = sum(run["tokens"]["total_tokens"] for run in counted)
    costs = [run["cost_usd"] for run in counted]
    return tokens, None if None in costs else round(sum(costs), 8)


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
        tokens, cost = _spend(runs)
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = getattr(report, "oneshot", None)
        if result is not None:
            self.items[result["item_id"]] = {"nodeid": report.nodeid, **result}

    def document(self) -> dict[str, Any]:
        items = list(self.items.values())
        return {
            "run_id": self.settings.run_id,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_sec": round(time.time() - self.started, 3),
            "settings": self.settings.model_dump(mode="json"),
            "summary": aggregate(items),
            "items": items,
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.items:
            return
        document = self.document()
        run_dir = self.settings.runs_dir / self.settings.run_id
        data = json.dumps(document, indent=2).encode()
        write_atomic(run_dir / "report.json", data)
        if self.settings.json_path:
            write_atomic(self.settings.json_path, data)
        for page in (run_dir / "report.html", self.settings.html_path):
            if page is not None:
                write_html(document, page)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.items:
            return
        rows = aggregate(list(self.items.values()))
        terminalreporter.section("oneshot results")
        header = ("task", "model/agent", "passed", "outcomes", "mean score", "tokens", "cost")
        table = [
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
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *table, strict=True)]
        for line in (header, *table):
            terminalreporter.write_line(
                "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            )
        terminalreporter.write_line(f"run dir: {self.settings.runs_dir / self.settings.run_id}")
        if resumed := sum(bool(item.get("resumed")) for item in self.items.values()):
            terminalreporter.write_line(f"resumed: {resumed} of {len(self.items)} items finished earlier, not rerun")
        if self.settings.json_path:
            terminalreporter.write_line(f"json report: {self.settings.json_path}")
        if self.settings.html_path:
            terminalreporter.write_line(f"html report: {self.settings.html_path}")
