"""The capture tools' work: start a task (snapshot the start), end it (snapshot, validate, write the task).

Nothing here touches the user's branch, index or working tree: snapshots go to private refs
(:meth:`GitRepo.snapshot`), tests run in throwaway copies (:mod:`mcp_server.validate`), the task is
written outside the repo (``$ONESHOT_TASKS_DIR``, else the per-user data dir). Every refusal is a
:class:`CaptureError` whose message tells the model what to do next.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from mcp_server import readiness, sensitivity, state
from mcp_server.created import Capture, write_task
from mcp_server.gitrepo import CaptureError, GitRepo
from mcp_server.validate import validate
from oneshot_shared.paths import data_dir
from proxy.cleaner import export_session
from proxy.redact import redact_text

SECRET_ENV: Final = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PAT)$")
_KEY_SHAPES: Final = (
    r"sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,}"
)
"""proxy/redact.py's key shapes in git's extended-regex syntax (what ``git grep -E`` takes)."""


def tasks_root() -> Path:
    """Where created tasks go: ``$ONESHOT_TASKS_DIR`` (the original's variable), else the data dir."""
    if env := os.environ.get("ONESHOT_TASKS_DIR"):
        return Path(env).expanduser().resolve()
    return data_dir() / "tasks" / "created"


def slugify(title: str) -> str:
    """OneShot's slug rule: lowercase, punctuation dropped, spaces and dashes to one dash, 50 chars."""
    slug = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title.lower())).strip("-")[:50].strip("-")
    return slug or "task"


def _now() -> datetime:
    return datetime.now().astimezone()


def _excluded(repo: GitRepo) -> list[str]:
    """The tasks dir when it lies inside the repo: never snapshot a task (its diff.patch) into the next one."""
    root = tasks_root()
    return [root.relative_to(repo.toplevel).as_posix()] if root.is_relative_to(repo.toplevel) else []


def _secret_files(repo: GitRepo, base: str | None, sha: str) -> list[str]:
    """Files new in ``sha`` since ``base`` holding a key (its shape, or the value of a secret variable we see)."""
    changed = repo.git("diff", "--name-only", "--no-renames", "--diff-filter=AM", base or _EMPTY_TREE, sha)
    paths = [path for path in changed.splitlines() if path]
    if not paths:
        return []
    values = [v for k, v in os.environ.items() if SECRET_ENV.search(k.upper()) and len(v) >= 8]
    found = repo.git("grep", "-I", "-l", "-E", _KEY_SHAPES, sha, "--", *paths, check=False).splitlines()
    for value in values:
        found += repo.git("grep", "-I", "-l", "-F", "-e", value, sha, "--", *paths, check=False).splitlines()
    return sorted({line.split(":", 1)[1] for line in found if ":" in line})


_EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _snapshot(repo: GitRepo, ref: str, message: str, parent: str | None, what: str) -> str:
    sha = repo.snapshot(ref, message, parent, exclude=_excluded(repo))
    leaked = _secret_files(repo, parent, sha)
    if leaked:
        repo.git("update-ref", "-d", ref)
        raise CaptureError(
            f"{what}: {', '.join(leaked)} holds an API key or token; a task must not carry it. Remove the key "
            f"from the file (or add the file to .gitignore), then call the tool again"
        )
    return sha


def check_readiness(cwd: Path) -> dict[str, Any]:
    return readiness.report(readiness.check(GitRepo.discover(cwd)))


def autofix_readiness(cwd: Path) -> dict[str, Any]:
    return readiness.autofix(GitRepo.discover(cwd))


def start_task(cwd: Path, task_title: str, notes: str = "", labels: list[str] | None = None) -> dict[str, Any]:
    """Snapshot the start state on ``refs/oneshot/<slug>/start``; a retry of the same title returns the same task."""
    if not task_title.strip():
        raise CaptureError("task_title is empty; give the task a short title (what the change does)")
    repo = GitRepo.discover(cwd)
    with state.locked(repo):
        current = state.load(repo)
        if current and current["status"] == "started":
            if current["title"] == redact_text(task_title):
                return _started(current)
            raise CaptureError(
                f"task {current['slug']!r} ({current['title']!r}) is already in progress in {repo.toplevel}; "
                "call repo_end_task_v1 to finish it before starting another"
            )
        blocking = readiness.blocking(readiness.check(repo))
        if blocking:
            raise CaptureError(
                f"{repo.toplevel} is not ready: "
                + "; ".join(f"{issue.message} ({issue.fix_suggestion})" for issue in blocking)
            )
        started = _now()
        slug = f"{slugify(task_title)}_{started:%Y%m%d_%H%M%S}"
        ref = f"refs/oneshot/{slug}/start"
        sha = _snapshot(repo, ref, f"OneShot start: {task_title}", repo.head(), "start state")
        current = {
            "status": "started",
            "slug": slug,
            "title": redact_text(task_title),
            "notes": redact_text(notes),
            "labels": list(labels or []),
            "start_commit": sha,
            "start_ref": ref,
            "head_at_start": repo.head() or "",
            "branch": repo.branch(),
            "remote_urls": repo.remote_urls(),
            "started_at": started.isoformat(timespec="seconds"),
            "trace_session": os.environ.get("ONESHOT_TRACE_SESSION") or os.environ.get("RUN_ID") or slug,
        }
        state.save(repo, current)
        return _started(current)


def _started(current: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "task_slug": current["slug"],
        "start_commit": current["start_commit"],
        "started_at": current["started_at"],
        "next": "make the change (and a test that fails without it), then call repo_end_task_v1 with a summary",
    }


def export_trace(session_id: str) -> dict[str, Any] | None:
    """The session from the tracing proxy's store (``$ONESHOT_TRACE_DB``), or None without one."""
    db = os.environ.get("ONESHOT_TRACE_DB")
    if not db or not Path(db).is_file():
        return None
    return export_session(db, session_id)


def end_task(
    cwd: Path, summary: str, labels: list[str] | None = None, sensitivity_level: str | None = None
) -> dict[str, Any]:
    """Snapshot the end state, validate the session's tests, write the task; a retry returns the same task."""
    repo = GitRepo.discover(cwd)
    with state.locked(repo):
        current = state.load(repo)
        if current is None:
            raise CaptureError(f"no task in progress in {repo.toplevel}; call repo_start_task_v1 first")
        if current["status"] == "ended" and Path(current["result"]["task_dir"]).is_dir():
            return {**current["result"], "already_ended": True}
        try:
            level = sensitivity.decide(current["remote_urls"], sensitivity_level)
        except ValueError as exc:
            raise CaptureError(str(exc)) from None
        ended = _now()
        start = current["start_commit"]
        end_ref = f"refs/oneshot/{current['slug']}/end"
        end = current.get("end_commit") or _snapshot(repo, end_ref, f"OneShot end: {summary}", start, "end state")
        changes = [
            {"status": line.split("\t")[0], "path": line.split("\t")[-1]}
            for line in repo.git("diff", "--name-status", "--no-renames", start, end).splitlines()
            if "\t" in line
        ]
        if not changes:
            repo.git("update-ref", "-d", end_ref)
            raise CaptureError(
                "nothing changed since repo_start_task_v1: make the change in the working tree, then end the task"
            )
        touched = [change["path"] for change in changes]
        checked = validate(repo, start, end, [c["path"] for c in changes if c["status"] != "D"])
        capture = Capture(
            slug=current["slug"],
            title=current["title"],
            notes=current["notes"],
            summary=summary,
            tags=list(
                dict.fromkeys([*current["labels"], *(labels or []), *(["sensitive"] if level == "sensitive" else [])])
            ),
            branch=current["branch"],
            remote_urls=current["remote_urls"],
            start_sha=start,
            end_sha=end,
            start_ref=current["start_ref"],
            started_at=current["started_at"],
            ended_at=ended.isoformat(timespec="seconds"),
            touched=touched,
            changes=changes,
            sensitivity=level,
            validation=checked,
            trace_session=current["trace_session"],
        )
        dest = tasks_root() / current["slug"]
        if dest.exists():
            raise CaptureError(f"{dest} already exists and is not this session's task; move it away and retry")
        diff = repo.git_bytes("diff", "--binary", "--full-index", "--no-renames", start, end)
        task_dir = write_task(repo, capture, diff, dest, export_trace(current["trace_session"]))
        result = {
            "ok": True,
            "task_dir": str(task_dir),
            "task_slug": current["slug"],
            "end_commit": end,
            "diff_bytes": len(diff),
            "touched_files": touched,
            "tests": {
                "status": checked.status,
                "message": checked.message,
                "fail_to_pass": checked.fail_to_pass,
                "pass_to_pass": checked.pass_to_pass,
            },
            "clean_trace_path": str(task_dir / "trace" / "session_clean.json"),
        }
        state.save(repo, {**current, "status": "ended", "end_commit": end, "result": result})
        return result
