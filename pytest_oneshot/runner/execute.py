"""Run Codex Runner completions against their testcases, in a sandbox without network.

Each question gets one sandbox of the session's kind (local bubblewrap or docker, through the
:class:`Sandbox` protocol) on an empty repo. Every (completion, testcase) pair is its own program --
``answer_preload + completion + testcase code`` -- in its own directory, run by ``python3 -I -B``
(no cwd, script dir or user site on ``sys.path``) with the testcase's ``stdin`` and a timeout. The
original tool ran every testcase of a completion as one program split by printed separators, so one
crash or one exhausted ``stdin`` failed the rest; here they are independent. A testcase passes when
the program exits 0 and its stdout equals ``expect``, compared line by line with trailing
whitespace and trailing blank lines ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pytest_oneshot.repo import git
from pytest_oneshot.runner.questions import Question
from pytest_oneshot.sandbox import Sandbox, SandboxFactory, SandboxSpec
from pytest_oneshot.task import RepoSpec, Task, TaskPaths, TaskSpec

__all__ = ["empty_snapshot", "normalize_output", "run_question", "run_questions"]

_RUN_DIR = ".oneshot-runner"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def normalize_output(text: str) -> str:
    """Output as compared: trailing whitespace of each line and trailing blank lines dropped."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).rstrip()


def empty_snapshot(cache_dir: Path) -> Path:
    """A cached git repo holding one empty commit: the workspace completions run in."""
    final = cache_dir / "runner" / "empty-repo"
    if (final / ".git").is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        git("init", "-q", "-b", "main", str(work / "repo"))
        git("commit", "-q", "--allow-empty", "-m", "oneshot runner workspace", cwd=work / "repo")
        try:
            os.rename(work / "repo", final)
        except OSError:  # a concurrent builder won
            if not (final / ".git").is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _spec(question: Question, snapshot: Path, run_id: str, options: Mapping[str, str]) -> SandboxSpec:
    start = git("rev-parse", "HEAD", cwd=snapshot)
    name = _UNSAFE.sub("_", question.id)[:32] + "-" + hashlib.sha256(question.id.encode()).hexdigest()[:8]
    spec = TaskSpec(
        task_id=f"runner-{question.id}", repo=RepoSpec(git_url=str(snapshot), start_commit_sha=start, branch="main")
    )
    task = Task(spec, TaskPaths(snapshot.parent))
    return SandboxSpec(task=task, repo_snapshot=snapshot, trial_id=f"{run_id}-runner-{name}", run_id=run_id,
                       options=options)  # fmt: skip


def run_question(sandbox: Sandbox, question: Question) -> list[list[bool]]:
    """Each completion's result per testcase, in order."""
    results: list[list[bool]] = []
    for number, completion in enumerate(question.completions):
        row = []
        for case, testcase in enumerate(question.testcases):
            where = f"{_RUN_DIR}/c{number}-t{case}"
            sandbox.write_file(f"{where}/main.py", question.program(completion.completion, testcase).encode())
            run = sandbox.exec(
                ["python3", "-I", "-B", "main.py"],
                cwd=f"{sandbox.workdir}/{where}",
                stdin=testcase.stdin.encode(),
                timeout=question.timeout_sec,
            )
            output = run.stdout.decode("utf-8", "replace")
            row.append(run.ok and normalize_output(output) == normalize_output(testcase.expect))
        results.append(row)
    return results


def run_questions(
    questions: Sequence[Question],
    factory: SandboxFactory,
    *,
    cache_dir: Path,
    run_id: str,
    options: Mapping[str, str],
    progress: Callable[[Question], None] | None = None,
) -> None:
    """Fill in every completion's ``results`` (one sandbox per question with completions).

    Raises:
        InfraError, SandboxUnavailableError: the sandbox could not run (not the completion's fault).
    """
    snapshot = empty_snapshot(cache_dir)
    for question in questions:
        if not question.completions:
            continue
        if progress is not None:
            progress(question)
        sandbox = factory(_spec(question, snapshot, run_id, options))
        try:
            sandbox.start()
            for completion, results in zip(question.completions, run_question(sandbox, question), strict=True):
                completion.results = results
        finally:
            sandbox.stop()
