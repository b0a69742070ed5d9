"""Write a created task: OneShot's layout, plus what lets the plugin run it as is.

::

    <slug>/
      tb_meta.json          OneShot's created form + repo.bundle, tests (validated ids), validation
      LM_INSTRUCTIONS.md    "# Task: {title}\\n\\n{notes}"
      repo_info.json        remote_urls, branch, start/end commit, touched_files
      diff.patch            start..end, --binary, new files included
      notes.md              title, times, summary, files changed, TODO
      repo.bundle           the start snapshot and its history (nothing after it)
      hidden/<path>         the session's test files as they ended (the graded tests)
      trace/                session_id.txt, session_clean.json
      evaluation/           rubric_template.md, tests_skeleton/test_skeleton.py

It is written into a temporary sibling and renamed into place, so a task dir that exists is complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.gitrepo import GitRepo
from mcp_server.validate import Validation
from proxy.redact import redact_text

RUBRIC_TEMPLATE = """# Evaluation Rubric

## Content
- [ ] TODO: Assess content correctness

## Location
- [ ] TODO: Assess file location appropriateness

## Clarity
- [ ] TODO: Assess code clarity and style
"""
TODO = (
    "## TODO\n- [ ] Review diff.patch\n- [ ] Fill out evaluation rubric\n- [ ] Implement tests\n"
    "- [ ] Validate trace data\n"
)


@dataclass(frozen=True)
class Capture:
    """Everything known about a finished session."""

    slug: str
    title: str
    notes: str
    summary: str
    tags: list[str]
    branch: str
    remote_urls: list[str]
    start_sha: str
    end_sha: str
    start_ref: str
    started_at: str
    ended_at: str
    touched: list[str]
    changes: list[dict[str, str]]
    sensitivity: str
    validation: Validation
    trace_session: str


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact_text(text), encoding="utf-8")


def tb_meta(capture: Capture, git_url: str) -> dict[str, Any]:
    validation = capture.validation
    return {
        "task_id": capture.slug,
        "metadata": {"title": capture.title, "tags": capture.tags},
        "repo": {
            "bundle": "repo.bundle",
            "git_url": git_url,
            "branch": capture.branch,
            "start_commit_sha": capture.start_sha,
            "end_commit_sha": capture.end_sha,
            "subdir": "",
            "sparse_checkout": [],
        },
        "lm": {"instructions": redact_text(capture.notes or capture.title)},
        "evaluation": {"content_rubric": [], "location_rubric": [], "clarity_rubric": []},
        "tests": {
            "command": "python -m pytest",
            "fail_to_pass": validation.fail_to_pass,
            "pass_to_pass": validation.pass_to_pass,
        },
        "validation": validation.record(),
        "sensitivity": {"level": capture.sensitivity},
    }


def notes_md(capture: Capture) -> str:
    files = "\n".join(f"- {path}" for path in capture.touched) or "- (none)"
    return (
        f"# Task Notes: {capture.title}\n\nCreated: {capture.started_at}\nCompleted: {capture.ended_at}\n\n"
        f"## Summary\n{capture.summary}\n\n## Files Changed\n{files}\n\n"
        f"## Test validation\n{capture.validation.status}: {capture.validation.message or 'ok'}\n\n{TODO}"
    )


def write_task(repo: GitRepo, capture: Capture, diff: bytes, dest: Path, trace: Mapping[str, Any] | None) -> Path:
    """Write the task to ``dest`` (which must not exist); return it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{capture.slug}-", dir=dest.parent))
    try:
        git_url = capture.remote_urls[0] if capture.remote_urls else ""
        _json(work / "tb_meta.json", tb_meta(capture, git_url))
        _text(work / "LM_INSTRUCTIONS.md", f"# Task: {capture.title}\n\n{capture.notes}")
        _json(
            work / "repo_info.json",
            {
                "remote_urls": capture.remote_urls,
                "branch": capture.branch,
                "start_commit": capture.start_sha,
                "end_commit": capture.end_sha,
                "touched_files": capture.touched,
                "changes": capture.changes,
            },
        )
        (work / "diff.patch").write_bytes(diff)
        _text(work / "notes.md", notes_md(capture))
        repo.git("bundle", "create", "-q", str(work / "repo.bundle"), capture.start_ref)
        for path in capture.validation.test_files + [p for p in capture.touched if p.endswith("conftest.py")]:
            target = work / "hidden" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(repo.git_bytes("show", f"{capture.end_sha}:{path}"))
        write_trace(work / "trace", capture.trace_session, trace)
        _text(work / "evaluation" / "rubric_template.md", RUBRIC_TEMPLATE)
        test_name = capture.slug.replace("-", "_")
        _text(
            work / "evaluation" / "tests_skeleton" / "test_skeleton.py",
            f"import pytest\n\ndef test_{test_name}():\n    pass\n",
        )
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def write_trace(trace_dir: Path, session_id: str, trace: Mapping[str, Any] | None) -> None:
    """``trace/session_id.txt`` and ``session_clean.json`` (a note instead of traces when none was recorded)."""
    trace_dir.mkdir(parents=True, exist_ok=True)
    (trace_dir / "session_id.txt").write_text(session_id, encoding="utf-8")
    if trace is None:
        record: dict[str, Any] = {
            "session_id": session_id,
            "traces": [],
            "count": 0,
            "note": "no tracing proxy was configured for this session (see `oneshot capture`)",
        }
    else:
        record = {**trace, "count": len(trace.get("traces") or [])}
    _json(trace_dir / "session_clean.json", record)
