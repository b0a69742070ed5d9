#!/usr/bin/env python3
"""Build the example tasks in ``tasks/`` reproducibly, and check them honestly with ``--check``.

Sources live in ``scripts/example_task_sources/<task>/`` (never under ``tasks/``, where pytest
would collect stray test files):

    task.json     title, tags, instructions, rubric text, commits, hidden tests, F2P/P2P ids,
                  and ``replay``: the look command and closing summary of the replay cassette
    notes.md      the author's notes (copied as is)
    commits/<n>/  one overlay per commit: its files are copied over the previous tree; the last
                  commit is the end (reference) commit, the one before it the start commit

A second kind, ``scripts/real_task_sources/<task>/`` (``task.json`` + ``notes.md``), cuts a task
from a real upstream bug-fix commit: ``upstream`` names the repo, its license and the start/end
SHAs; ``hidden_files`` the test files shipped under ``hidden/`` (an overlay of the repo);
``environment`` the ``pip install`` arguments of the task venv (see :func:`build_real_task`).
The upstream history comes from a local mirror (``$ONESHOT_UPSTREAM_MIRRORS``) or a clone.

Commits use fixed names, emails and dates and an isolated git config, so rebuilding gives the
same SHAs. Building writes, per task: ``tb_meta.json``, ``repo.bundle`` (history up to the start
commit only), ``diff.patch`` (start..end without the hidden tests), ``notes.md`` and the hidden
test files under ``tests/``, and ``cassettes/replay.json``: a scripted model trajectory (look,
``apply_patch`` of diff.patch, run the tests, summarise) that replay mode feeds to real codex.

``--check`` clones each bundle into a temp dir and uses only git and the task's test command
to verify the fail-to-pass / pass-to-pass split, the reference diff and that nothing leaks (a
real task standalone, without the harness: its ``environment.pip`` installed into a fresh venv);
then it replays the cassette with the real codex binary in a local sandbox and requires the
same tree as diff.patch and passing hidden tests (SKIPPED when codex is not installed).

Usage: python scripts/build_example_tasks.py [--check] [TASK ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: use the project from this checkout

from pytest_oneshot.agent import AgentRequest, AgentResult  # noqa: E402
from pytest_oneshot.agent.codex import CodexAgent, find_codex  # noqa: E402
from pytest_oneshot.change import render_patch  # noqa: E402
from pytest_oneshot.errors import OneshotError, TaskFormatError  # noqa: E402
from pytest_oneshot.model.cassette import (  # noqa: E402
    CASSETTE_FORMAT,
    Cassette,
    apply_patch,
    exec_command,
    load_cassette,
    message,
)
from pytest_oneshot.model.scripted import ScriptedResponsesServer  # noqa: E402
from pytest_oneshot.repo import snapshot  # noqa: E402
from pytest_oneshot.sandbox import SandboxSpec  # noqa: E402
from pytest_oneshot.sandbox.local import LocalSandbox  # noqa: E402
from pytest_oneshot.task import Task, TaskPaths, TaskSpec, load_task  # noqa: E402
from pytest_oneshot.workspace import collect_change, fresh_manifest, fresh_side  # noqa: E402

SOURCES = ROOT / "scripts" / "example_task_sources"
REAL_SOURCES = ROOT / "scripts" / "real_task_sources"
"""Second source kind: tasks cut from real upstream bug-fix commits (see :func:`build_real_task`)."""
TASKS = ROOT / "tasks"
HIDDEN_DIR = "hidden"
"""A real task's hidden files: ``hidden/<path>`` is written to ``<repo>/<path>`` before scoring."""
UPSTREAM_MIRRORS_ENV = "ONESHOT_UPSTREAM_MIRRORS"
"""Dir of local bare mirrors (``<owner>+<name>/repo``) tried before cloning an upstream URL."""
DEFAULT_UPSTREAM_MIRRORS = Path("/work/.mirror")
PIP_TIMEOUT_SEC = 1200.0
MAX_BUNDLE_BYTES = 15 * 1024 * 1024
"""A bundle with full upstream history bigger than this must use ``"history": "squash"``."""


def source_dir(name: str) -> Path:
    """The sources of task ``name``: a synthetic example or a real upstream task."""
    for kind in (SOURCES, REAL_SOURCES):
        if (kind / name / "task.json").is_file():
            return kind / name
    raise SystemExit(f"no sources for task {name!r} in {SOURCES} or {REAL_SOURCES}")


def source_names() -> list[str]:
    return sorted(
        path.name for kind in (SOURCES, REAL_SOURCES) if kind.is_dir() for path in kind.iterdir()
        if (path / "task.json").is_file()
    )  # fmt: skip


def is_real_source(src_dir: Path) -> bool:
    return src_dir.parent == REAL_SOURCES


# Isolated, deterministic git: no user/system config, no hooks, no signing, one pack thread.
GIT_CONFIG = [
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "core.autocrlf=false",
    "-c",
    "core.fileMode=true",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "pack.threads=1",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.algorithm=myers",
    "-c",
    "advice.detachedHead=false",
]
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "TZ": "UTC",
}
CODE_QUALITY = "The change is minimal, idiomatic and consistent with the surrounding code"
DEFAULT_QUALITY_CRITERIA = [
    "touches only what the task needs and keeps the existing style",
    "no dead code, debugging leftovers or needless new dependencies",
]


def git(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run git with the isolated config; return the completed process (UTF-8 text output)."""
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    return subprocess.run(
        ["git", *GIT_CONFIG, *args], cwd=cwd, env=full_env, check=check, capture_output=True, encoding="utf-8"
    )


def git_bytes(*args: str, cwd: Path) -> bytes:
    """Run git with the isolated config; return its stdout as bytes (file contents, patches)."""
    return subprocess.run(
        ["git", *GIT_CONFIG, *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True
    ).stdout


def git_out(*args: str, cwd: Path) -> str:
    return git(*args, cwd=cwd).stdout.strip()


# --------------------------------------------------------------------------------------------
# unified diff -> codex apply_patch


class PatchConversionError(ValueError):
    """A git diff holds a change codex's ``apply_patch`` cannot express."""


_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"
# Extended header lines apply_patch has no counterpart for (it writes text files, mode 0644).
_UNSUPPORTED = {
    "old mode ": "a file mode change",
    "rename from ": "a rename (make the diff with --no-renames)",
    "copy from ": "a copy",
    "GIT binary patch": "a binary diff",
    "Binary files ": "a binary diff",
}


@dataclass
class _FileDiff:
    """One file's section of a git diff: what happens to it and its hunks' lines."""

    path: str
    kind: str  # "add", "delete" or "update"
    hunks: list[list[str]] = field(default_factory=list)


def unified_to_apply_patch(diff: str) -> str:
    """The ``apply_patch`` input (``*** Begin Patch`` ... ``*** End Patch``) making git diff ``diff``'s change.

    Each git hunk becomes a bare ``@@`` chunk with the same ' ', '-', '+' lines: codex finds a
    chunk by its old lines, searching forward from the previous chunk, so git's context lines
    are what anchor it (git's ``@@ ... @@ funcname`` is not reused: codex would seek that line
    *after* the previous chunk and fail when two hunks share it). A chunk whose old lines also
    occur between the previous chunk and its real place would land early; only a replay with
    codex (``--check``) can tell, as the diff alone does not show the rest of the file.

    Raises:
        PatchConversionError: binary diffs, mode changes, renames, copies, quoted paths, hunks
            without old lines (codex appends those at the end of the file) and files whose new
            version ends without a newline (codex always writes one).
    """
    sections = _split_files(diff)
    out = ["*** Begin Patch"]
    for section in sections:
        file = _parse_file(section)
        if file.kind == "delete":
            out.append(f"*** Delete File: {file.path}")
        elif file.kind == "add":
            out.append(f"*** Add File: {file.path}")
            out += [line for hunk in file.hunks for line in _chunk_lines(file.path, hunk)]
        else:
            out.append(f"*** Update File: {file.path}")
            for hunk in file.hunks:
                out += ["@@", *_chunk_lines(file.path, hunk)]
    out.append("*** End Patch")
    return "\n".join(out) + "\n"


def _split_files(diff: str) -> list[list[str]]:
    lines = diff.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    starts = [index for index, line in enumerate(lines) if line.startswith("diff --git ")]
    if not starts or any(line.strip() for line in lines[: starts[0]]):
        raise PatchConversionError("not a git diff: expected it to start with 'diff --git'")
    return [lines[start:end] for start, end in zip(starts, [*starts[1:], len(lines)], strict=True)]


def _parse_file(section: list[str]) -> _FileDiff:
    header = section[0].removeprefix("diff --git ")
    kind, index = "update", 1
    while index < len(section) and not section[index].startswith("@@"):
        line = section[index]
        for prefix, what in _UNSUPPORTED.items():
            if line.startswith(prefix):
                raise PatchConversionError(f"{header}: {what} cannot be expressed with apply_patch")
        if line.startswith("new file mode "):
            kind = "add"
            if line != "new file mode 100644":
                raise PatchConversionError(f"{header}: {line!r}: apply_patch creates plain 0644 files only")
        elif line.startswith("deleted file mode "):
            kind = "delete"
        index += 1
    half = (len(header) - 5) // 2  # the header is "a/P b/P"
    file = _FileDiff(header[2 : 2 + half], kind)
    if header.startswith('"') or header != f"a/{file.path} b/{file.path}":
        raise PatchConversionError(f"{header}: cannot read the path (quoted paths are not supported)")
    while index < len(section):
        index = _read_hunk(section, index, file)
    if kind == "update" and not file.hunks:
        raise PatchConversionError(f"{file.path}: no content change to express")
    return file


def _read_hunk(section: list[str], index: int, file: _FileDiff) -> int:
    """Append the hunk starting at ``section[index]`` to ``file``; return the index after it."""
    match = _HUNK_HEADER.match(section[index])
    if not match:
        raise PatchConversionError(f"{file.path}: expected a hunk header, got {section[index]!r}")
    old_start, old_len, _, new_len = (int(group) if group is not None else 1 for group in match.groups())
    hunk: list[str] = []
    index += 1
    while old_len > 0 or new_len > 0 or (index < len(section) and section[index] == _NO_NEWLINE):
        if index >= len(section):
            raise PatchConversionError(f"{file.path}: hunk at old line {old_start} is cut short")
        line = section[index]
        tag = line[:1]
        if tag not in (" ", "-", "+", "\\"):
            raise PatchConversionError(f"{file.path}: malformed hunk line {line!r}")
        old_len -= tag in (" ", "-")
        new_len -= tag in (" ", "+")
        hunk.append(line)
        index += 1
    if file.kind == "update" and old_start != 0 and not any(line[:1] in (" ", "-") for line in hunk):
        raise PatchConversionError(
            f"{file.path}: hunk at old line {old_start} has no context lines, and apply_patch would append it at "
            "the end of the file; make the diff with context (git diff -U3)"
        )
    file.hunks.append(hunk)
    return index


def _chunk_lines(path: str, hunk: list[str]) -> list[str]:
    """The hunk's lines for apply_patch: a missing newline may only be the old version's."""
    lines: list[str] = []
    for line in hunk:
        if line != _NO_NEWLINE:
            lines.append(line)
        elif not lines or lines[-1][:1] != "-":
            raise PatchConversionError(
                f"{path}: the new version ends without a newline, which apply_patch cannot write (it ends every "
                "file with one)"
            )
    return lines


# --------------------------------------------------------------------------------------------
# replay cassette

REPLAY_CASSETTE = Path("cassettes") / "replay.json"
REPLAY_MODEL = "replay"
REPLAY_TEST_COMMAND = "python -m pytest -q"
REPLAY_TIMEOUT_SEC = 120.0
_PROMPT_TOKENS = 7_900
"""About what codex 0.169's developer prompt and tool schemas cost, before the task's words."""
_RESULT_TOKENS = {"call_look": 1_400, "call_patch": 40, "call_tests": 60}
"""Rough size of each tool result the model reads back in the next request."""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def build_cassette(task_id: str, source: dict, diff: bytes) -> dict[str, Any]:
    """The scripted trajectory replaying the reference solution: look, patch, test, summarise.

    ``source["replay"]`` gives the look command, the closing summary and optionally the test
    command (default ``python -m pytest -q``; a real project wants a narrower one); the patch is
    ``diff`` in apply_patch form. Usage grows with the history the way codex re-sends it.
    """
    steps = [
        exec_command(source["replay"]["look"], call_id="call_look"),
        apply_patch(unified_to_apply_patch(diff.decode("utf-8")), call_id="call_patch"),
        exec_command(source["replay"].get("test", REPLAY_TEST_COMMAND), call_id="call_tests"),
        message(source["replay"]["summary"]),
    ]
    turns = []
    history, cached = _PROMPT_TOKENS + _tokens(source["instructions"]), 0
    for item in steps:
        written = _tokens(json.dumps(item))
        usage = {"input_tokens": history, "cached_input_tokens": cached, "output_tokens": written}
        turns.append({"output": [item], "usage": usage})
        cached = history // 128 * 128  # the prompt cache holds the previous request, in 128-token blocks
        history += written + _RESULT_TOKENS.get(item.get("call_id", ""), 0)
    cassette = {"format": CASSETTE_FORMAT, "model": REPLAY_MODEL, "task_id": task_id, "turns": turns}
    Cassette.model_validate(cassette)
    return cassette


def cassette_bytes(cassette: dict[str, Any]) -> bytes:
    """The file form of a cassette: stable key order and indentation, so rebuilds are byte-identical."""
    return (json.dumps(cassette, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# build


def _copy_overlay(src: Path, dest: Path) -> None:
    """Copy every file under ``src`` onto ``dest`` (mode 0644, bytes as is)."""
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            target.chmod(0o644)


def _commit_env(source: dict, index: int) -> dict[str, str]:
    first = dt.datetime.fromisoformat(source["first_commit_date"])
    when = first + dt.timedelta(days=index, hours=index * 3, minutes=index * 17)
    stamp = f"{int(when.timestamp())} +0000"
    author = source["author"]
    return {
        "GIT_AUTHOR_NAME": author["name"],
        "GIT_AUTHOR_EMAIL": author["email"],
        "GIT_COMMITTER_NAME": author["name"],
        "GIT_COMMITTER_EMAIL": author["email"],
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }


def _tb_meta(name: str, source: dict, start: str, end: str) -> dict:
    correctness = source["correctness"]
    return {
        "task_id": name,
        "metadata": {"title": source["title"], "tags": source["tags"], "summary": source.get("summary", "")},
        "repo": {
            "bundle": "repo.bundle",
            "git_url": "",
            "branch": "main",
            "start_commit_sha": start,
            "end_commit_sha": end,
        },
        "lm": {"instructions": source["instructions"]},
        "evaluation": {
            "rubrics": [
                {
                    "id": "correctness",
                    "criterion": correctness["criterion"],
                    "weight": 0.7,
                    "evaluation_criteria": correctness["evaluation_criteria"],
                },
                {
                    "id": "code_quality",
                    "criterion": CODE_QUALITY,
                    "weight": 0.3,
                    "evaluation_criteria": source.get("quality_criteria", DEFAULT_QUALITY_CRITERIA),
                },
            ]
        },
        "tests": {
            "command": "python -m pytest",
            "fail_to_pass": source["fail_to_pass"],
            "pass_to_pass": source["pass_to_pass"],
            "rubric_id": "correctness",
        },
        "limits": source["limits"],
        "sensitivity": {"level": "safe"},
    }


def build_task(src_dir: Path, out_dir: Path) -> tuple[str, str]:
    """Build one task from ``src_dir`` into ``out_dir`` (replaced); return (start, end) SHAs."""
    if is_real_source(src_dir):
        return build_real_task(src_dir, out_dir)
    source = json.loads((src_dir / "task.json").read_text(encoding="utf-8"))
    commits = source["commits"]
    if len(commits) < 2:
        raise SystemExit(f"{src_dir}/task.json: commits: need at least a start and an end commit")
    hidden = source["hidden_tests"]
    with tempfile.TemporaryDirectory(prefix="oneshot-build-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git("init", "-q", cwd=repo)
        shas: list[str] = []
        for index, commit in enumerate(commits):
            _copy_overlay(src_dir / "commits" / commit["dir"], repo)
            git("add", "-A", cwd=repo)
            git("commit", "-q", "--no-verify", "-m", commit["message"], cwd=repo, env=_commit_env(source, index))
            shas.append(git_out("rev-parse", "HEAD", cwd=repo))
        start, end = shas[-2], shas[-1]
        end_files = set(git_out("ls-tree", "-r", "--name-only", end, cwd=repo).splitlines())
        for path in hidden:
            if path not in end_files:
                raise SystemExit(f"{src_dir}/task.json: hidden_tests: {path} is not in the end commit")
        excludes = [f":(exclude){path}" for path in hidden]
        patch = git_bytes(
            "diff",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--full-index",
            start,
            end,
            "--",
            ".",
            *excludes,
            cwd=repo,
        )
        # The bundle holds main at the start commit and nothing later; HEAD too, so a plain
        # `git clone repo.bundle` checks main out.
        git("update-ref", "refs/heads/main", start, cwd=repo)
        git("reset", "-q", "--hard", start, cwd=repo)
        bundle = Path(tmp) / "repo.bundle"
        git("bundle", "create", "-q", str(bundle), "HEAD", "main", cwd=repo)

        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        shutil.copyfile(bundle, out_dir / "repo.bundle")
        for path in hidden:
            target = out_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(git_bytes("show", f"{end}:{path}", cwd=repo))
    _write_task_files(src_dir, out_dir, source, patch, _tb_meta(out_dir.name, source, start, end))
    return start, end


def _write_task_files(src_dir: Path, out_dir: Path, source: dict, patch: bytes, meta: dict) -> None:
    """Write diff.patch, the replay cassette, notes.md and tb_meta.json of a task being built."""
    (out_dir / "diff.patch").write_bytes(patch)
    try:
        cassette = build_cassette(out_dir.name, source, patch)
    except PatchConversionError as exc:
        raise SystemExit(f"{src_dir}: the reference diff cannot be replayed: {exc}") from None
    (out_dir / REPLAY_CASSETTE).parent.mkdir()
    (out_dir / REPLAY_CASSETTE).write_bytes(cassette_bytes(cassette))
    shutil.copyfile(src_dir / "notes.md", out_dir / "notes.md")
    (out_dir / "tb_meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _upstream_clone(upstream: dict, scratch: Path) -> Path:
    """A bare clone of the upstream repo: from a local mirror (``$ONESHOT_UPSTREAM_MIRRORS``, default
    /work/.mirror, holding ``<owner>+<name>/repo``) when there is one, else from ``upstream["url"]``."""
    mirrors = Path(os.environ.get(UPSTREAM_MIRRORS_ENV) or DEFAULT_UPSTREAM_MIRRORS)
    local = mirrors / upstream["repo"].replace("/", "+") / "repo"
    origin = str(local) if local.is_dir() else upstream["url"]
    dest = scratch / "upstream.git"
    git("clone", "-q", "--bare", origin, str(dest), cwd=scratch)
    return dest


def build_real_task(src_dir: Path, out_dir: Path) -> tuple[str, str]:
    """Build a task from a real upstream bug-fix commit; return the task's (start, end) SHAs.

    ``task.json`` names ``upstream`` (``repo`` owner/name, ``url``, ``license``, ``start_commit``,
    ``end_commit``: the fix commit, whose only parent is the start commit), ``hidden_files`` (repo
    paths shipped under ``hidden/`` at their end-commit version: the fix's test changes plus any
    other test file the ids name), ``environment`` (``pip``: one ``pip install`` argument list run
    from the repo root, ``system_packages``), ``history`` (``full``: the upstream history up to the
    start commit, same SHAs; ``squash``: one root commit holding the start tree, for big histories)
    and optionally ``patch_exclude`` (pathspecs left out of diff.patch besides the hidden files,
    e.g. a changelog entry). Everything else is as for the synthetic examples.
    """
    source = json.loads((src_dir / "task.json").read_text(encoding="utf-8"))
    upstream, hidden = source["upstream"], source["hidden_files"]
    with tempfile.TemporaryDirectory(prefix="oneshot-build-") as tmp:
        repo = _upstream_clone(upstream, Path(tmp))
        start = git_out("rev-parse", "--verify", f"{upstream['start_commit']}^{{commit}}", cwd=repo)
        end = git_out("rev-parse", "--verify", f"{upstream['end_commit']}^{{commit}}", cwd=repo)
        parents = git_out("rev-list", "--parents", "-n", "1", end, cwd=repo).split()[1:]
        if parents != [start]:
            raise SystemExit(f"{src_dir}/task.json: upstream: the end commit's parents are {parents}, not [start]")
        history = source.get("history", "full")
        if history == "squash":
            # Deterministic: fixed committer, the upstream commits' own dates and messages.
            def squashed(commit: str, *parent: str) -> str:
                fields = git_out("show", "-s", "--format=%ct%n%B", commit, cwd=repo).split("\n", 1)
                stamp = f"{fields[0]} +0000"
                env = {
                    "GIT_AUTHOR_NAME": "pytest-oneshot task builder",
                    "GIT_AUTHOR_EMAIL": "builder@oneshot.invalid",
                    "GIT_COMMITTER_NAME": "pytest-oneshot task builder",
                    "GIT_COMMITTER_EMAIL": "builder@oneshot.invalid",
                    "GIT_AUTHOR_DATE": stamp,
                    "GIT_COMMITTER_DATE": stamp,
                }
                message = f"{upstream['url']} at {commit}\n\n{fields[1].strip()}\n"
                args = [arg for p in parent for arg in ("-p", p)]
                return git("commit-tree", f"{commit}^{{tree}}", *args, "-m", message, cwd=repo, env=env).stdout.strip()

            start, end = squashed(start), ""
            end = squashed(upstream["end_commit"], start)
        elif history != "full":
            raise SystemExit(f"{src_dir}/task.json: history: {history!r} is neither 'full' nor 'squash'")
        end_files = set(git_out("ls-tree", "-r", "--name-only", end, cwd=repo).splitlines())
        for path in hidden:
            if path not in end_files:
                raise SystemExit(f"{src_dir}/task.json: hidden_files: {path} is not in the end commit")
        excludes = [f":(exclude){path}" for path in [*hidden, *source.get("patch_exclude", [])]]
        patch = git_bytes(
            "diff", "--binary", "--no-color", "--no-ext-diff", "--no-renames", "--full-index",
            start, end, "--", ".", *excludes, cwd=repo,
        )  # fmt: skip
        if not patch:
            raise SystemExit(f"{src_dir}/task.json: the fix commit changes nothing outside the hidden files")
        # The bundle holds main (and HEAD) at the start commit: no tags, no later history.
        git("update-ref", "refs/heads/main", start, cwd=repo)
        git("symbolic-ref", "HEAD", "refs/heads/main", cwd=repo)
        bundle = Path(tmp) / "repo.bundle"
        git("bundle", "create", "-q", str(bundle), "HEAD", "main", cwd=repo)
        size = bundle.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise SystemExit(f'{src_dir}: repo.bundle is {size / 2**20:.1f} MiB; use "history": "squash"')
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        shutil.copyfile(bundle, out_dir / "repo.bundle")
        for path in hidden:
            target = out_dir / HIDDEN_DIR / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(git_bytes("show", f"{end}:{path}", cwd=repo))
    meta = _tb_meta(out_dir.name, source, start, end)
    meta["environment"] = source["environment"]
    _write_task_files(src_dir, out_dir, source, patch, meta)
    return start, end


# --------------------------------------------------------------------------------------------
# check


@dataclass
class Row:
    check: str
    ok: bool
    detail: str = ""
    skipped: bool = False
    """Not verified here (e.g. no codex binary): neither a pass nor a failure."""

    @property
    def mark(self) -> str:
        return "SKIPPED" if self.skipped else "ok" if self.ok else "FAIL"


@dataclass
class Report:
    task: str
    rows: list[Row] = field(default_factory=list)

    def add(self, check: str, ok: bool, detail: str = "") -> bool:
        self.rows.append(Row(check, ok, detail))
        return ok

    def skip(self, check: str, detail: str) -> None:
        self.rows.append(Row(check, False, detail, skipped=True))

    @property
    def ok(self) -> bool:
        return all(row.ok or row.skipped for row in self.rows)

    @property
    def skipped(self) -> int:
        return sum(row.skipped for row in self.rows)

    def render(self) -> str:
        width = max(len(row.check) for row in self.rows)
        status = ("OK" if self.ok else "FAILED") + (f" ({self.skipped} check(s) SKIPPED)" if self.skipped else "")
        lines = [f"== {self.task}: {status}"]
        for row in self.rows:
            lines.append(f"  {row.check:<{width}}  {row.mark:<7}  {row.detail}")
        return "\n".join(lines)


def _junit_key(node_id: str) -> tuple[str, str]:
    """The (classname, name) pair pytest's JUnit XML uses for ``node_id``."""
    parts = node_id.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:-1]]), parts[-1]


@dataclass(frozen=True)
class TestEnv:
    """Where a task's tests run: ``python`` in ``repo``, a clone of the task's bundle.

    Examples run with the builder's own Python. A real task's ``environment.pip`` is installed
    into a fresh venv from ``repo``'s root, as the harness does into its task venv; editable
    installs then point at ``repo``, so every scenario (start, reference diff, replayed diff)
    is played in that one clone, reset in between.
    """

    __test__ = False
    python: str
    repo: Path
    venv: Path | None = None

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTHONPATH", None)
        if self.venv is None:
            env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # keep this project's plugins out of the task's run
        else:
            env["VIRTUAL_ENV"] = str(self.venv)
            env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def argv(self, command: str) -> list[str]:
        argv = shlex.split(command)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python
        return argv

    def reset(self) -> None:
        """Back to the start commit; ignored files (an editable install's metadata) stay."""
        git("reset", "-q", "--hard", cwd=self.repo)
        git("clean", "-q", "-f", "-d", cwd=self.repo)


def _run_tests(env: TestEnv, command: str, ids: list[str], collected: set[str], timeout: float) -> dict[str, str]:
    """Run ``ids`` with the task's test command; return node id -> passed/failed/error/skipped/missing.

    Only collected ids are passed to pytest (one unknown id would make it run nothing).
    """
    xml = env.repo.parent / f"junit-{os.getpid()}-{len(ids)}.xml"
    subprocess.run(
        [*env.argv(command), "-p", "no:cacheprovider", "-q", f"--junitxml={xml}", *[i for i in ids if i in collected]],
        cwd=env.repo,
        env=env.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    outcomes: dict[tuple[str, str], str] = {}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            outcome = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
            outcomes[(case.get("classname", ""), case.get("name", ""))] = {"failure": "failed"}.get(outcome, outcome)
        xml.unlink()
    return {node_id: outcomes.get(_junit_key(node_id), "missing") for node_id in ids}


def _collect(env: TestEnv, command: str, paths: list[str]) -> set[str]:
    proc = subprocess.run(
        [*env.argv(command), "-p", "no:cacheprovider", "--collect-only", "-q", *paths],
        cwd=env.repo,
        env=env.env(),
        capture_output=True,
        text=True,
    )
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def _clone(bundle: Path, dest: Path) -> None:
    """Clone the bundle the plain way an agent's sandbox would (its HEAD must name main)."""
    git("clone", "-q", str(bundle), str(dest), cwd=dest.parent)


def _write_files(repo: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _summary(outcomes: dict[str, str], want: str) -> tuple[bool, str]:
    good = [i for i, o in outcomes.items() if (o in ("failed", "error") if want == "fail" else o == "passed")]
    bad = {i: o for i, o in outcomes.items() if i not in good}
    detail = f"{len(good)}/{len(outcomes)} {want}ed" if want == "fail" else f"{len(good)}/{len(outcomes)} passed"
    if bad:
        detail += "; wrong: " + ", ".join(f"{i.split('::', 1)[-1]}={o}" for i, o in sorted(bad.items()))
    return not bad and bool(outcomes), detail


def hidden_files(task_dir: Path) -> dict[str, bytes]:
    """Repo-relative path -> content of every hidden file: ``hidden/<path>`` (a real task's
    overlay of the repo) or, for the examples, ``tests/<file>`` (written to the same path)."""
    overlay = task_dir / HIDDEN_DIR
    root = overlay if overlay.is_dir() else task_dir
    scan = overlay if overlay.is_dir() else task_dir / "tests"
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(scan.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _pip_args(meta: dict) -> list[str]:
    environment = meta.get("environment") or {}
    return list(environment.get("pip") or [])


def _lenient_task(task_dir: Path, meta: dict) -> Task:
    """The task as the replay needs it, from a tb_meta.json the current loader rejects only for the
    new real-task fields (``environment.pip``/``system_packages``, ids of files under ``hidden/``)."""
    environment = {k: v for k, v in (meta.get("environment") or {}).items() if k not in ("pip", "system_packages")}
    spec = TaskSpec.model_validate({**meta, "environment": environment})
    return Task(spec, TaskPaths(task_dir))


def _pip_install(python: str, pip_args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pip_args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SEC,
    )


def _make_venv(venv: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    return str(venv / "bin" / "python")


def _test_env(meta: dict, bundle: Path, base: Path, report: Report) -> TestEnv | None:
    """Clone the bundle and, for a real task, install its environment (None: the install failed)."""
    repo = base / "work"
    _clone(bundle, repo)
    pip_args = _pip_args(meta)
    if not pip_args:
        return TestEnv(sys.executable, repo)
    venv = base / "venv"
    python = _make_venv(venv)
    proc = _pip_install(python, pip_args, repo)
    version = subprocess.run([python, "-V"], capture_output=True, text=True).stdout.strip()
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
    ok = report.add(
        "environment.pip installs",
        proc.returncode == 0,
        f"{version}: pip install {' '.join(pip_args)}" if proc.returncode == 0 else tail,
    )
    packages = (meta.get("environment") or {}).get("system_packages") or []
    if packages and shutil.which("dpkg-query"):
        missing = [
            name for name in packages
            if subprocess.run(["dpkg-query", "-W", name], capture_output=True).returncode != 0
        ]  # fmt: skip
        report.add("system_packages present", not missing, ", ".join(missing) or ", ".join(packages))
    return TestEnv(python, repo, venv) if ok else None


def check_task(task_dir: Path) -> Report:
    """Verify one built task in temp dirs with git and its test command (a real task: in a venv
    holding its ``environment.pip``, standalone, without the harness)."""
    report = Report(task_dir.name)
    meta_path = task_dir / "tb_meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        repo_spec, tests = meta["repo"], meta["tests"]
        start, end = repo_spec["start_commit_sha"], repo_spec["end_commit_sha"]
        f2p, p2p = list(tests["fail_to_pass"]), list(tests["pass_to_pass"])
        command, instructions = tests.get("command", "python -m pytest"), meta["lm"]["instructions"]
        timeout = float(meta.get("limits", {}).get("tests_timeout_sec", 300))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.add("tb_meta.json", False, f"{meta_path}: {exc}")
        return report
    real = (task_dir / HIDDEN_DIR).is_dir() or bool(_pip_args(meta))
    detail = f"{len(f2p)} F2P, {len(p2p)} P2P; load_task ok"
    try:
        task = load_task(task_dir)
    except Exception as exc:  # report any validation problem as a failed row
        if not real:
            report.add("tb_meta.json", False, str(exc))
            return report
        # hidden/ ids and environment.pip are the harness's next schema; today's loader may refuse them.
        report.skip("current load_task", f"rejects it (harness support pending): {exc}")
        try:
            task = _lenient_task(task_dir, meta)
        except Exception as exc2:
            report.add("tb_meta.json", False, f"invalid even without the new fields: {exc2}")
            return report
        detail = f"{len(f2p)} F2P, {len(p2p)} P2P; valid without the new fields"
    shas_ok = all(re.fullmatch(r"[0-9a-f]{40}", sha) for sha in (start, end))
    report.add("tb_meta.json", bool(f2p) and shas_ok, detail if shas_ok else f"{detail}; SHAs must be 40 hex digits")

    hidden = hidden_files(task_dir)
    listed = f2p + p2p
    outside = [i for i in listed if i.split("::", 1)[0] not in hidden]
    report.add(
        "ids in hidden files", not outside and bool(hidden), ", ".join(outside) or f"{len(hidden)} hidden test file(s)"
    )

    bundle = task_dir / "repo.bundle"
    listing = git("bundle", "list-heads", str(bundle), cwd=task_dir).stdout.split("\n")
    heads = {ref: sha for sha, _, ref in (line.partition(" ") for line in listing if line)}
    report.add(
        "bundle heads",
        heads.get("refs/heads/main") == start and set(heads.values()) == {start},
        ", ".join(f"{ref}={sha[:12]}" for ref, sha in sorted(heads.items()))
        + f"; {bundle.stat().st_size / 2**20:.2f} MiB",
    )

    patch = (task_dir / "diff.patch").read_bytes().decode("utf-8", errors="replace")
    touched = set(re.findall(r"^diff --git a/(\S+) b/(\S+)$", patch, re.M))
    touched_paths = {p for pair in touched for p in pair}
    leaked = sorted(touched_paths & set(hidden))
    report.add(
        "diff spares hidden tests", bool(patch) and not leaked, ", ".join(leaked) or f"{len(touched)} file(s) changed"
    )

    names = sorted({re.sub(r"\[.*\]$", "", part) for i in listed for part in i.split("::")[1:]})
    named = [n for n in names if n in instructions]
    report.add("instructions hide tests", not named, ", ".join(named) or f"{len(names)} name(s) absent")

    with tempfile.TemporaryDirectory(prefix="oneshot-check-") as tmp:
        base = Path(tmp)
        start_repo = base / "start"
        _clone(bundle, start_repo)
        head = git_out("rev-parse", "HEAD", cwd=start_repo)
        leaked_end = git("cat-file", "-e", f"{end}^{{commit}}", cwd=start_repo, check=False).returncode == 0
        reachable = git_out("rev-list", "--all", cwd=start_repo).split()
        tags = git_out("tag", "--list", cwd=start_repo).split()
        report.add(
            "bundle lacks end commit",
            head == start and not leaked_end and end not in reachable and not tags,
            f"HEAD={head[:12]}, {len(reachable)} commit(s), {len(tags)} tag(s), "
            f"end {'PRESENT' if leaked_end else 'absent'}",
        )

        env = _test_env(meta, bundle, base, report)
        if env is None:
            return report
        _write_files(env.repo, hidden)
        collected_start = _collect(env, command, sorted(hidden))
        missing = [i for i in listed if i not in collected_start]
        report.add("ids collected at start", not missing, ", ".join(missing) or f"{len(listed)}/{len(listed)}")
        ok, detail = _summary(_run_tests(env, command, f2p, collected_start, timeout), "fail")
        report.add("start: F2P fail", ok, detail)
        ok, detail = _summary(_run_tests(env, command, p2p, collected_start, timeout), "pass")
        report.add("start: P2P pass", ok, detail)

        env.reset()
        applied = git("apply", "--binary", str(task_dir / "diff.patch"), cwd=env.repo, check=False)
        report.add("diff.patch applies", applied.returncode == 0, applied.stderr.strip()[:200])
        _write_files(env.repo, hidden)
        collected_end = _collect(env, command, sorted(hidden))
        missing = [i for i in listed if i not in collected_end]
        unlisted = sorted(collected_end - set(listed))
        if real:  # whole upstream test files: the harness selects the graded ids, the rest may stay unlisted
            ok = not missing
            detail = "missing: " + ", ".join(missing) if missing else (
                f"{len(collected_end)} collected, {len(listed)} graded, {len(unlisted)} others unlisted"
            )  # fmt: skip
        else:
            ok = not missing and not unlisted
            detail = (
                "; ".join(
                    filter(
                        None,
                        [
                            missing and "missing: " + ", ".join(missing),
                            unlisted and "not listed: " + ", ".join(unlisted),
                        ],
                    )
                )
                or f"{len(collected_end)} collected, all listed"
            )
        report.add("ids collected after diff", ok, detail)
        ok, detail = _summary(_run_tests(env, command, listed, collected_end, timeout), "pass")
        report.add("after diff: all pass", ok, detail)
        check_replay(task, report, hidden, base / "replay", env if real else None)
    return report


@dataclass(frozen=True)
class Replay:
    """What one codex run on a cassette did: its outcome, its edits and the turns it was served."""

    result: AgentResult
    diff: bytes
    turns_served: list[int | None]
    tool_outputs: dict[str, str]


def replay_cassette(task: Task, cassette: Cassette, codex_bin: Path, scratch: Path) -> Replay:
    """Run the real codex binary on ``task`` in a local sandbox (with the task's environment, built
    under ``scratch``), with ``cassette`` as the model."""
    with ScriptedResponsesServer() as server:
        url = server.add_script(task.name, cassette)
        agent = CodexAgent({"model": cassette.model, "base_url": url, "codex_bin": str(codex_bin)})
        spec = SandboxSpec(
            task=task,
            repo_snapshot=snapshot(task, scratch / "cache"),
            trial_id=f"replay-{task.name}",
            run_id="build-check",
            network=agent.network,
            mounts=agent.mounts(),
            options={"cache_dir": str(scratch / "cache")},
        )
        sandbox = LocalSandbox(spec)
        try:
            sandbox.start()
            fresh = fresh_manifest(sandbox)
            request = AgentRequest(
                task=task,
                instructions=task.instructions,
                model=cassette.model,
                timeout_sec=REPLAY_TIMEOUT_SEC,
                log_dir=scratch / "agent",
            )
            result = agent.run(sandbox, request)
            change = collect_change(sandbox, fresh, spec.repo_snapshot)
            diff = render_patch(change, fresh_side(sandbox, sandbox.workdir, change.paths, fresh, spec.repo_snapshot))
        finally:
            sandbox.stop()
        served = server.requests(task.name)
    return Replay(result, diff, [r.turn for r in served], served[-1].tool_outputs() if served else {})


def _differing_paths(bundle: Path, agent_diff: bytes, reference: Path, repo: Path) -> list[str]:
    """Paths where codex's tree differs from the one ``reference`` gives; leaves codex's tree in ``repo``."""
    _clone(bundle, repo)
    agent_patch = repo.parent / "agent.diff"
    agent_patch.write_bytes(agent_diff)
    git("apply", "--binary", "--index", str(agent_patch), cwd=repo)
    agent_tree = git_out("write-tree", cwd=repo)
    git("reset", "-q", "--hard", cwd=repo)
    git("apply", "--binary", "--index", str(reference), cwd=repo)
    differing = git_out("diff-index", "--cached", "--name-only", agent_tree, cwd=repo).splitlines()
    git("read-tree", "-u", "--reset", agent_tree, cwd=repo)
    return differing


def _exit_codes(tool_outputs: dict[str, str], call_ids: list[str]) -> dict[str, str]:
    """call id -> the exit code codex reported for that command ("?" when it reported none)."""
    codes = {}
    for call_id in call_ids:
        found = re.search(r"Process exited with code (-?\d+)", tool_outputs.get(call_id, ""))
        codes[call_id] = found.group(1) if found else "?"
    return codes


def check_replay(
    task: Task, report: Report, hidden: dict[str, bytes], scratch: Path, env: TestEnv | None = None
) -> None:
    """The cassette is current, and the real codex replaying it makes diff.patch's change and passes the tests.

    ``env``: a real task's test environment (see :class:`TestEnv`); codex's edits are replayed in
    its clone and tested with its venv. Without it, a fresh clone and the builder's Python.
    """
    path = task.paths.root / REPLAY_CASSETTE
    try:
        cassette = load_cassette(path)
    except TaskFormatError as exc:
        report.add("cassette loads", False, str(exc))
        return
    detail = f"{len(cassette.turns)} turns, task_id {cassette.task_id!r}"
    report.add("cassette loads", cassette.task_id == task.name, detail)
    try:
        source = json.loads((source_dir(task.name) / "task.json").read_text(encoding="utf-8"))
        expected = cassette_bytes(build_cassette(task.name, source, task.reference_patch()))
    except (OSError, ValueError, KeyError, SystemExit) as exc:
        report.add("cassette current", False, f"cannot regenerate it: {exc}")
    else:
        current = path.read_bytes() == expected
        report.add("cassette current", current, "" if current else f"stale: rebuild with {Path(__file__).name}")
    try:
        codex_bin = find_codex()
    except OneshotError as exc:
        report.skip("codex replay", f"codex not found, cassette not replayed: {exc}")
        return
    scratch.mkdir()
    replay = replay_cassette(task, cassette, codex_bin, scratch)
    in_order = replay.turns_served == list(range(len(cassette.turns)))
    outcome = ": ".join(filter(None, [replay.result.status, replay.result.message]))
    completed = replay.result.status == "completed"
    report.add("codex replay", completed and in_order, f"{outcome}; turns served {replay.turns_served}")
    items = [item for turn in cassette.turns for item in turn.output]
    commands = [item["call_id"] for item in items if item.get("name") == "exec_command"]
    codes = _exit_codes(replay.tool_outputs, commands)
    detail = ", ".join(f"{call_id}={code}" for call_id, code in codes.items())
    report.add("replay: commands exit 0", set(codes.values()) == {"0"}, detail)
    if not replay.diff:
        report.add("replay = diff.patch", False, "codex changed nothing")
        return
    repo = scratch / "repo"
    differing = _differing_paths(task.paths.root / "repo.bundle", replay.diff, task.paths.reference_diff, repo)
    report.add("replay = diff.patch", not differing, "differ: " + ", ".join(differing) if differing else "same tree")
    meta = task.spec.tests
    listed = [*meta.fail_to_pass, *meta.pass_to_pass]
    if env is None:
        env = TestEnv(sys.executable, repo)
    else:
        env.reset()
        agent_patch = scratch / "agent.diff"
        agent_patch.write_bytes(replay.diff)
        git("apply", "--binary", str(agent_patch), cwd=env.repo)
    _write_files(env.repo, hidden)
    collected = _collect(env, meta.command, sorted(hidden))
    timeout = float(task.spec.limits.tests_timeout_sec)
    ok, detail = _summary(_run_tests(env, meta.command, listed, collected, timeout), "pass")
    report.add("replay: all pass", ok, detail)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the built tasks instead of building")
    parser.add_argument("tasks", nargs="*", help="task names (default: every source)")
    args = parser.parse_args(argv)
    names = args.tasks or source_names()
    if args.check:
        reports = [check_task(TASKS / name) for name in names]
        for report in reports:
            print(report.render())
        failed = [r.task for r in reports if not r.ok]
        skipped = [r.task for r in reports if r.skipped]
        print(
            f"\n{len(reports) - len(failed)}/{len(reports)} task(s) OK"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + (f"; SKIPPED checks in: {', '.join(skipped)}" if skipped else "")
        )
        return 1 if failed else 0
    for name in names:
        start, end = build_task(source_dir(name), TASKS / name)
        print(f"built tasks/{name}: start {start[:12]}, end {end[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
