"""``oneshot prepare CREATED --out DIR``: a created task (ours or OneShot's) as a prepared task the plugin runs.

What changes from the created form: the task id loses its ``_YYYYMMDD_HHMMSS`` (by pattern, not by
cutting at underscores as the original did); the instructions come from the user's notes and the end
summary; the rubric template becomes rubric entries (plus a test-scored ``correctness`` rubric when
the task has validated tests); the created form's empty placeholders are dropped; the hidden tests
are split out of the reference diff (they ship in ``hidden/``). The repo comes from the task's
bundle, else from a local clone (``--repo``), else from ``repo.git_url`` -- OneShot's own tasks
point at GitHub, which an offline machine cannot reach: that is a one-line error saying to pass ``--repo``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final

from oneshot_shared.errors import OneshotError
from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.task import META_FILE, load_task

FETCH_TIMEOUT_SEC: Final = 120.0
_STAMP: Final = re.compile(r"_\d{8}_\d{6}$")
_DIFF_HEADER: Final = re.compile(r"^diff --git a/(.+) b/(.+)$", re.MULTILINE)
TESTS_WEIGHT: Final = 0.6


def prepared_slug(task_id: str) -> str:
    return _STAMP.sub("", task_id) or task_id


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        ["git", "-c", "uploadpack.allowAnySHA1InWant=true", *args],
        cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_SEC, stdin=subprocess.DEVNULL,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise OneshotError(lines[-1] if lines else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout.strip()


def _bundle_from(source: str, sha: str, branch: str, dest: Path, meta: str) -> None:
    """``dest``: a bundle of ``sha`` and its history, fetched from a clone or URL ``source``."""
    with tempfile.TemporaryDirectory(prefix="oneshot-prepare-") as tmp:
        work = Path(tmp)
        _git("init", "-q", "--bare", str(work), cwd=work)
        try:
            _git("fetch", "-q", "--no-tags", source, sha, cwd=work)
        except (OneshotError, subprocess.TimeoutExpired) as exc:
            raise OneshotError(
                f"{meta}: repo: cannot fetch start commit {sha[:12]} from {source} ({exc}); "
                "pass --repo /path/to/a/local/clone that holds it"
            ) from None
        _git("update-ref", f"refs/heads/{branch or 'main'}", "FETCH_HEAD", cwd=work)
        _git("bundle", "create", "-q", str(dest), f"refs/heads/{branch or 'main'}", cwd=work)


def _summary(notes: Path) -> str:
    if not notes.is_file():
        return ""
    match = re.search(r"^## Summary\n(.*?)(?=^## |\Z)", notes.read_text(encoding="utf-8"), re.S | re.M)
    return match[1].strip() if match else ""


def rubrics_from_template(template: Path, has_tests: bool) -> list[dict[str, Any]]:
    """``## Section`` + ``- [ ] criterion`` lines -> one rubric per section (``TODO:`` prefixes dropped)."""
    text = template.read_text(encoding="utf-8") if template.is_file() else ""
    sections = re.findall(r"^## (.+)\n((?:(?!## ).*\n?)*)", text, re.M)
    rubrics = []
    for name, body in sections:
        criteria = [re.sub(r"^-\s*(\[[ xX]\]\s*)?(TODO:\s*)?", "", line.strip()) for line in body.splitlines()]
        criteria = [line for line in criteria if line]
        if criteria:
            rubric_id = re.sub(r"\W+", "_", name.strip().lower()).strip("_")
            rubrics.append(
                {"id": rubric_id, "criterion": f"{name.strip()}: {criteria[0]}", "evaluation_criteria": criteria}
            )
    share = (1 - TESTS_WEIGHT if has_tests else 1.0) / max(len(rubrics), 1)
    return [{**rubric, "weight": round(share, 4)} for rubric in rubrics]


def _without(diff: bytes, paths: set[str]) -> bytes:
    """The diff minus the files in ``paths`` (each file's part starts at its ``diff --git`` line)."""
    text = diff.decode("utf-8", "surrogateescape")
    starts = [m.start() for m in _DIFF_HEADER.finditer(text)] + [len(text)]
    kept = [text[: starts[0]]]
    for begin, end in itertools.pairwise(starts):
        header = _DIFF_HEADER.match(text, begin)
        if header and header[2] not in paths:
            kept.append(text[begin:end])
    return "".join(kept).encode("utf-8", "surrogateescape")


def prepare(created: Path, out: Path, local_repo: Path | None = None) -> Path:
    """Write ``out/<slug>/`` from the created task ``created``; return it.

    Raises:
        OneshotError: the created task is malformed, its repo cannot be had, or the destination exists.
    """
    try:
        task = load_task(created)
    except TaskFormatError as exc:
        raise OneshotError(str(exc)) from None
    raw = json.loads((created / META_FILE).read_text(encoding="utf-8"))
    spec = task.spec
    dest = out / prepared_slug(spec.task_id)
    if dest.exists():
        raise OneshotError(f"{dest} already exists; remove it or choose another --out")
    meta = str(created / META_FILE)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=out))
    try:
        if task.bundle_path is not None and local_repo is None:
            shutil.copyfile(task.bundle_path, work / "repo.bundle")
        else:
            source = str(local_repo.resolve()) if local_repo else spec.repo.git_url
            if not source:
                raise OneshotError(f"{meta}: repo: neither a bundle nor a git_url; pass --repo /path/to/a/clone")
            _bundle_from(source, spec.repo.start_commit_sha, spec.repo.branch, work / "repo.bundle", meta)
        hidden = task.hidden_files()
        for path, content in hidden.items():
            (work / "hidden" / path).parent.mkdir(parents=True, exist_ok=True)
            (work / "hidden" / path).write_bytes(content)
        if task.paths.reference_diff.is_file():
            (work / "diff.patch").write_bytes(_without(task.reference_patch(), set(hidden)))
        for name in ("notes.md", "repo_info.json", "trace", "evaluation"):
            source_path = created / name
            if source_path.is_dir():
                shutil.copytree(source_path, work / name)
            elif source_path.is_file():
                shutil.copyfile(source_path, work / name)
        has_tests = bool(spec.tests.fail_to_pass)
        rubrics = rubrics_from_template(created / "evaluation" / "rubric_template.md", has_tests)
        tests: dict[str, Any] = spec.tests.model_dump(exclude_none=True)
        if has_tests:
            rubrics.insert(0, {"id": "correctness", "criterion": "The validated tests pass", "weight": TESTS_WEIGHT})
            tests["rubric_id"] = "correctness"
        summary = _summary(created / "notes.md")
        instructions = task.instructions.strip() or spec.title
        if summary:
            instructions += f"\n\nWhen done: {summary}"
        prepared = {
            "task_id": dest.name,
            "metadata": {**spec.metadata.model_dump(), "summary": summary},
            "repo": {**spec.repo.model_dump(), "bundle": "repo.bundle"},
            "lm": {"instructions": instructions},
            "evaluation": {"rubrics": rubrics},
            "tests": tests,
            "sensitivity": raw.get("sensitivity") or {"level": "unknown"},
            **({"validation": raw["validation"]} if raw.get("validation") else {}),
        }
        (work / META_FILE).write_text(json.dumps(prepared, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        load_task(work)
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest
