"""The HTML report (``--oneshot-html``, ``runs/<run_id>/report.html``) in a real headless chromium: it
loads without a console error or a request, its matrix shows every item, agent text stays text.

The screenshots are kept: in ``$ONESHOT_TEST_ARTIFACTS`` when set (CI keeps that directory), else in
the test's tmp dir; their paths are printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.report.html import render_html, write_html
from tests.browser import find_chromium, visit
from tests.conftest import ParsedRun

PAYLOAD = "</script><script>alert(1)</script>"
JUDGE_PAYLOAD = '<img src=x onerror="alert(2)">'
# The agent fixes fix-add, leaves fix-keep alone, and writes the payload into a new file either way.
AGENT = (
    f"printf '%s\\n' '{PAYLOAD}' > evil.html; "
    'case "$ONESHOT_INSTRUCTIONS" in *leave*) ;; *) sed -i "s/a - b/a + b/" calc/__init__.py;; esac'
)
PAGE_FACTS = {
    "matrix": "[...document.querySelectorAll('.matrix [data-item]')].map(e => e.dataset.item)",
    "scripts": "document.scripts.length",
    "images": "document.images.length",
    "diff": "[...document.querySelectorAll('pre.diff')].map(e => e.textContent).join('\\n')",
    "judge": "[...document.querySelectorAll('.item .reason')].map(e => e.textContent).join('\\n')",
    "gates": "[...document.querySelectorAll('#gates ~ table.generic tr.bad')].length",
    "opened": "new Promise(done => { const item = document.querySelectorAll('details.item')[1];"
    " addEventListener('hashchange', () => done(item.open)); location.hash = '#' + item.id; })",
}


@pytest.fixture
def chromium() -> str:
    return find_chromium()


@pytest.fixture
def finished_run(
    make_task: Callable[..., Path], pytester: pytest.Pytester, run_and_parse: Callable[..., ParsedRun]
) -> ParsedRun:
    """A real run: 2 tasks x 2 rollouts, one solved, one not; every diff holds the payload."""
    make_task(pytester.path / "tasks" / "fix-add")
    make_task(pytester.path / "tasks" / "fix-keep", lm={"instructions": "calc.add subtracts; leave it as it is."})
    return run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={AGENT}",
                         "--oneshot-rollouts=2", "--oneshot-html=pages/report.html")  # fmt: skip


def _keep(screenshot: bytes, name: str, tmp_path: Path) -> Path:
    artifacts = Path(os.environ.get("ONESHOT_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{name}.png"
    path.write_bytes(screenshot)
    print(f"screenshot: {path}")
    return path


def _with_sections(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the per-model and gate sections (their shape as report.json holds them) and a
    judge's answer on one rubric, all carrying agent-controlled text."""
    items = json.loads(json.dumps(document["items"]))
    items[0]["rubrics"][-1].update(reasoning=f"judged {JUDGE_PAYLOAD}", evidence=[PAYLOAD], scored_by="judge")
    models = [{"model": "command", "attempts": 4, "pass_rate": 0.5, "pass_rate_ci95": [0.15, 0.85]}]
    gates = [
        {"name": "min_pass_rate", "value": 0.5, "interval": [0.15, 0.85], "threshold": 0.9, "held": False,
         "reason": f"0.5 < 0.9 {PAYLOAD}"},
        {"name": "max_errors", "value": 0, "threshold": 0, "held": True, "reason": ""},
    ]  # fmt: skip
    return {**document, "items": items, "models": models, "gates": gates}


def test_the_report_page_shows_every_item_without_errors_or_injection(
    finished_run: ParsedRun, chromium: str, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    document = finished_run.report
    run_dir = pytester.path / "runs" / document["run_id"]
    assert (run_dir / "report.html").is_file() and (pytester.path / "pages" / "report.html").is_file()
    page = tmp_path / "sections.html"
    write_html(_with_sections(document), page)
    item_ids = sorted(item["item_id"] for item in document["items"])
    assert len(item_ids) == 4

    for name, path in (("report", run_dir / "report.html"), ("option", pytester.path / "pages" / "report.html"),
                       ("sections", page)):  # fmt: skip
        seen = visit(chromium, path, PAGE_FACTS, tmp_path / f"chromium-{name}")
        shot = _keep(seen.screenshot, f"oneshot-report-{name}", tmp_path)
        assert seen.problems == [], f"{path}: {seen.problems} (screenshot: {shot})"
        assert sorted(seen.values["matrix"]) == item_ids, "the matrix links every item once"
        assert seen.values["scripts"] == 1 and seen.values["images"] == 0, "no injected element"
        assert seen.values["diff"].count(PAYLOAD) == 4, "each diff shows the payload as text"
        assert seen.values["opened"] is True, "a link to an item opens it"
        assert seen.screenshot.startswith(b"\x89PNG")
    assert JUDGE_PAYLOAD in seen.values["judge"] and seen.values["gates"] == 1


def test_links_to_run_dirs_are_relative_to_the_page(finished_run: ParsedRun, pytester: pytest.Pytester) -> None:
    item = next(item for item in finished_run.report["items"] if item["outcome"] == "passed")
    name = Path(item["run_dir"]).name
    page = (pytester.path / "pages" / "report.html").read_text()
    assert f'href="../runs/{finished_run.report["run_id"]}/{name}/diff.patch"' in page
    assert f'href="{name}/diff.patch"' in (Path(item["run_dir"]).parent / "report.html").read_text()


def test_agent_text_is_escaped_in_the_markup(finished_run: ParsedRun, tmp_path: Path) -> None:
    """Without a browser: no agent string reaches the page unescaped."""
    html = render_html(_with_sections(finished_run.report), tmp_path)
    assert PAYLOAD not in html and JUDGE_PAYLOAD not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1
