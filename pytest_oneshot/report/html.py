"""The HTML report: one self-contained page a person reads after a run (``--oneshot-html``, and always
``runs/<run_id>/report.html``).

Rendered from the same document as report.json, plus each item's ``diff.patch`` from its run dir.
Everything is inline (CSS, a few lines of JS, no fonts or images), so the page works offline and
as a CI artifact; a Content-Security-Policy forbids every fetch and every script but the page's own.
Every string in it may come from the agent (diffs, reasons, judge answers): the template autoescapes
all of them, and the diff highlighter only picks a CSS class per line.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oneshot_shared.paths import cache_dir
from pytest_oneshot.files import write_atomic

if TYPE_CHECKING:
    import jinja2

MAX_DIFF_BYTES = 256 * 1024
"""Per item: a longer diff is cut here (the page links the whole file)."""
_RUN_FILES = ("diff.patch", "evaluation_results.json", "scoring_results.md", "agent/agent.log", "tests.log")


@functools.cache
def _environment() -> jinja2.Environment:
    """Made on first use (jinja2 costs a pytest process 20 ms to import); the template's compiled form is
    kept in the cache dir, as compiling it again costs each run's end another 40 ms."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        bytecode_cache=jinja2.FileSystemBytecodeCache(str(_bytecode_dir())),
        autoescape=True,  # every value, whatever the file name: agent text never becomes markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _bytecode_dir() -> Path:
    directory = cache_dir() / "jinja2"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_html(document: dict[str, Any], path: Path) -> None:
    write_atomic(path, render_html(document, path.parent).encode())


def render_html(document: dict[str, Any], page_dir: Path) -> str:
    """The page for ``document``; links to run dirs are relative to ``page_dir``, where it will be."""
    items = [_item_view(item, page_dir) for item in document.get("items", [])]
    models = list(dict.fromkeys(item["label"] for item in items))
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc=document,
        nonce=secrets.token_urlsafe(16),
        models=models,
        matrix=_matrix(items, models),
        distributions=_distributions(items, models),
        model_rows=document.get("models") or _model_fallback(items, models),
        gates=document.get("gates") or [],
        items=items,
        fmt=_fmt,
        columns=_columns,
        state=_state,
    )


def _label(item: dict[str, Any]) -> str:
    return str(item.get("model") or item["agent"]["name"])


def _item_view(item: dict[str, Any], page_dir: Path) -> dict[str, Any]:
    run_dir = Path(item.get("run_dir") or ".")
    rel = Path(os.path.relpath(run_dir, page_dir)).as_posix() if item.get("run_dir") else ""
    phases: dict[str, float] = item.get("phases") or {}
    total = sum(phases.values()) or 1.0
    return {
        **item,
        "anchor": "item-" + run_dir.name,
        "label": _label(item),
        "rel_dir": rel,
        "links": [name for name in _RUN_FILES if (run_dir / name).is_file()],
        "diff": _diff_lines(run_dir / "diff.patch"),
        "phase_bars": [(name, seconds, 100 * seconds / total) for name, seconds in phases.items()],
    }


def _diff_lines(path: Path) -> dict[str, Any]:
    """The diff as (css class, line) pairs: a highlighter for unified diffs that never emits markup."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DIFF_BYTES + 1)
    except OSError:
        return {"lines": [], "cut": False, "missing": True}
    lines = []
    in_hunk = False  # inside a hunk, "+++ x" is an added line; outside, a file header
    for line in data[:MAX_DIFF_BYTES].decode("utf-8", errors="replace").splitlines():
        if line.startswith("@@"):
            kind, in_hunk = "d-hunk", True
        elif line.startswith("diff --git") or not in_hunk or line[:1] not in ("", "+", "-", " ", "\\"):
            kind, in_hunk = "d-file", False
        else:
            kind = {"+": "d-add", "-": "d-del"}.get(line[:1], "")
        lines.append((kind, line))
    return {"lines": lines, "cut": len(data) > MAX_DIFF_BYTES, "missing": False}


def _matrix(items: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """One row per task, one cell per model: its items (each a link) and pass rate."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        cells[(item["task_name"], item["label"])].append(item)
    rows = []
    for task in sorted({item["task_name"] for item in items}):
        row = []
        for model in models:
            runs = sorted(cells[(task, model)], key=lambda item: item["rollout"])
            passed = sum(run["outcome"] == "passed" for run in runs)
            rate = passed / len(runs) if runs else None
            shade = "" if rate is None else f"p{round(rate * 10)}"  # red (p0) through yellow to green (p10)
            row.append({"items": runs, "passed": passed, "rate": rate, "shade": shade})
        rows.append({"task": task, "cells": row})
    return rows


def _distributions(items: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Per model, how many items scored in each tenth of [0, 1] (1.0 in the last), and unscored ones."""
    rows = []
    for model in models:
        scores = [item["score"] for item in items if item["label"] == model]
        bins = Counter(min(int(score * 10), 9) for score in scores if score is not None)
        counts = [bins[index] for index in range(10)]
        rows.append({"model": model, "bins": counts, "top": max(counts) or 1, "unscored": scores.count(None)})
    return rows


def _model_fallback(items: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """Per-model counts when the document has no ``models`` section."""
    rows = []
    for model in models:
        runs = [item for item in items if item["label"] == model]
        scores = [run["score"] for run in runs if run["score"] is not None]
        rows.append(
            {
                "model": model,
                "attempts": len(runs),
                "passed": sum(run["outcome"] == "passed" for run in runs),
                "errors": sum(run["outcome"] == "error" for run in runs),
                "mean_score": sum(scores) / len(scores) if scores else None,
            }
        )
    return rows


def _fmt(value: Any) -> str:
    """A value of a generic table cell: numbers rounded, intervals as [a, b], nested values compact."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(part) for part in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_fmt(part)}" for key, part in value.items())
    return str(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of a generic table's rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _state(row: dict[str, Any]) -> str:
    """``good``/``bad`` for a row that says whether it held (a gate), else nothing."""
    verdict = row.get("held", row.get("status"))
    if verdict in (True, "held", "passed"):
        return "good"
    if verdict in (False, "failed"):
        return "bad"
    return ""
