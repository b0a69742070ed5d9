"""Is the repository in a state a task can be captured from? (``repo_check_readiness_v1`` / autofix)

Every check asks git itself (``rev-parse --git-path``, ``ls-files -u``, ``submodule status``), so it
holds in a subdirectory or a linked worktree, where the original's relative ``.git/`` paths were
silently skipped. Severity ``error`` blocks ``repo_start_task_v1``; ``warning`` does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp_server.gitrepo import GitRepo

AUTOFIX_NAME = "OneShot User"
AUTOFIX_EMAIL = "oneshot@localhost"


@dataclass(frozen=True)
class Issue:
    id: str
    severity: Literal["error", "warning"]
    message: str
    fix_suggestion: str
    commands: list[str] = field(default_factory=list)


def _git_path(repo: GitRepo, name: str) -> Path:
    """Where git keeps ``name`` for this worktree (``MERGE_HEAD``, ``rebase-merge``...)."""
    path = Path(repo.git("rev-parse", "--git-path", name))
    return path if path.is_absolute() else repo.toplevel / path


def check(repo: GitRepo) -> list[Issue]:
    """Every problem found, blocking ones first."""
    issues: list[Issue] = []
    for key, issue_id in (("user.name", "no_git_name"), ("user.email", "no_git_email")):
        if not repo.config(key):
            issues.append(
                Issue(  # snapshots use their own identity: only the user's later commits need theirs
                    issue_id,
                    "warning",
                    f"git {key} is not set",
                    f"set it (repo_autofix_readiness_v1 sets a local placeholder): git config {key} '<yours>'",
                    [f"git config {key} '<yours>'"],
                )
            )
    if _git_path(repo, "MERGE_HEAD").exists():
        issues.append(
            Issue(
                "merge_in_progress",
                "error",
                "a merge is in progress",
                "finish it (git commit) or abort it (git merge --abort), then start the task",
                ["git merge --abort"],
            )
        )
    if _git_path(repo, "rebase-merge").exists() or _git_path(repo, "rebase-apply").exists():
        issues.append(
            Issue(
                "rebase_in_progress",
                "error",
                "a rebase is in progress",
                "finish it (git rebase --continue) or abort it (git rebase --abort), then start the task",
                ["git rebase --abort"],
            )
        )
    conflicted = sorted({line.split("\t", 1)[1] for line in repo.git("ls-files", "-u").splitlines() if "\t" in line})
    if conflicted:
        shown = ", ".join(conflicted[:5]) + (f" and {len(conflicted) - 5} more" if len(conflicted) > 5 else "")
        issues.append(
            Issue(
                "merge_conflicts",
                "error",
                f"unresolved conflicts in {shown}",
                "resolve them and `git add` the files (or abort the merge/rebase)",
                ["git status"],
            )
        )
    status = repo.git("submodule", "status", "--recursive", check=False).splitlines()
    missing = [line[1:].split()[1] for line in status if line.startswith("-") and len(line[1:].split()) > 1]
    if missing:
        issues.append(
            Issue(
                "uninitialized_submodules",
                "warning",
                f"submodules not initialised: {', '.join(missing)}",
                "initialise them so the task's snapshot holds their files",
                ["git submodule update --init --recursive"],
            )
        )
    return sorted(issues, key=lambda issue: issue.severity != "error")


def blocking(issues: list[Issue]) -> list[Issue]:
    return [issue for issue in issues if issue.severity == "error"]


def report(issues: list[Issue]) -> dict[str, Any]:
    errors = blocking(issues)
    summary = "ready" if not errors else "not ready: " + "; ".join(issue.message for issue in errors)
    return {"ok": not errors, "issues": [asdict(issue) for issue in issues], "summary": summary}


def autofix(repo: GitRepo) -> dict[str, Any]:
    """Fix what cannot lose work: a missing identity (repo-local placeholder), uninitialised submodules.

    Merges, rebases and conflicts are the user's decisions and stay reported.
    """
    fixed: list[str] = []
    for issue in check(repo):
        if issue.id == "no_git_name":
            repo.git("config", "user.name", AUTOFIX_NAME)
        elif issue.id == "no_git_email":
            repo.git("config", "user.email", AUTOFIX_EMAIL)
        elif issue.id == "uninitialized_submodules":
            repo.git("submodule", "update", "--init", "--recursive", check=False)
        else:
            continue
        fixed.append(issue.id)
    remaining = check(repo)
    return {"fixed": fixed, **report(remaining), "remaining_issues": [asdict(issue) for issue in remaining]}
