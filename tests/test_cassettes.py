"""Replay cassettes of the shipped tasks, and the unified diff -> apply_patch converter behind them.

The converter is checked against git: a diff converted and applied by codex's own apply_patch
must leave exactly the files ``git apply`` leaves.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_oneshot.model.cassette import load_cassette
from pytest_oneshot.task import load_task

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(path.name for path in (REPO_ROOT / "tasks").iterdir() if (path / "tb_meta.json").is_file())
EXAMPLES = [name for name in SHIPPED if not (REPO_ROOT / "tasks" / name / "hidden").is_dir()]
"""The synthetic examples; the real upstream tasks' replays need their PyPI environment and are
checked by ``scripts/build_example_tasks.py --check`` (which installs it into a venv)."""


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_example_tasks", REPO_ROOT / "scripts" / "build_example_tasks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
Files = Mapping[str, bytes | None]
"""Path -> content; None deletes the file."""


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.autocrlf=false", *args],
        cwd=repo, input=stdin, check=True, capture_output=True,
    ).stdout  # fmt: skip


def _repo(path: Path, files: Files) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    _write(path, files)
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "before")
    return path


def _write(repo: Path, files: Files) -> None:
    for name, data in files.items():
        target = repo / name
        if data is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _git_diff(tmp_path: Path, before: Files, after: Files, *options: str) -> str:
    """The git diff from ``before`` to ``before`` updated with ``after``."""
    repo = _repo(tmp_path / "diff-src", before)
    _write(repo, after)
    _git(repo, "add", "-A")
    return _git(repo, "diff", "--cached", "--binary", *options).decode()


def _tree(repo: Path) -> dict[str, bytes]:
    return {
        path.relative_to(repo).as_posix(): path.read_bytes()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(repo).parts
    }


LINES = b"".join(b"line %d\n" % number for number in range(1, 41))
ROUND_TRIPS: dict[str, tuple[Files, Files]] = {
    "several hunks": (
        {"a.txt": LINES},
        {
            "a.txt": LINES.replace(b"line 3\n", b"line three\n")
            .replace(b"line 30\n", b"")
            .replace(b"line 38\n", b"x\ny\n")
        },
    ),
    "add, delete and update in one diff": (
        {"gone.py": b"print('bye')\nprint('really')\n", "keep.py": b"a = 1\nb = 2\n"},
        {"gone.py": None, "new/dir/made.py": b"def f():\n    return 1\n", "keep.py": b"a = 1\nb = 3\n"},
    ),
    "empty files added and deleted": ({"old-empty": b""}, {"old-empty": None, "new-empty": b""}),
    "text added to an empty file": ({"e.txt": b""}, {"e.txt": b"now\nsomething\n"}),
    "old version lacks the final newline": ({"n.txt": b"a\nb\nc"}, {"n.txt": b"a\nb\nC\n"}),
    "CRLF line endings": ({"w.txt": b"one\r\ntwo\r\nthree\r\n"}, {"w.txt": b"one\r\n2\r\nthree\r\n"}),
    "changes at the first and last lines": ({"f.txt": LINES}, {"f.txt": b"first\n" + LINES[7:-8] + b"last\n"}),
}


@pytest.mark.codex
@pytest.mark.parametrize(("before", "after"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_codex_applies_the_converted_diff_like_git_apply(
    tmp_path: Path, codex_bin: Path, before: Files, after: Files
) -> None:
    diff = _git_diff(tmp_path, before, after, "--no-renames")
    oracle, replay = _repo(tmp_path / "oracle", before), _repo(tmp_path / "replay", before)
    _git(oracle, "apply", "--binary", "-", stdin=diff.encode())
    start = _tree(replay)

    patch = builder.unified_to_apply_patch(diff)
    applied = subprocess.run(
        [str(codex_bin), "--codex-run-as-apply-patch", patch], cwd=replay, capture_output=True, text=True, timeout=60
    )

    assert applied.returncode == 0, applied.stderr
    assert _tree(replay) == _tree(oracle) != start


def test_several_hunks_become_bare_chunks_and_files_are_added_and_deleted(tmp_path: Path) -> None:
    before, after = ROUND_TRIPS["add, delete and update in one diff"]
    edited = LINES.replace(b"line 3\n", b"3\n").replace(b"line 30\n", b"30\n")

    patch = builder.unified_to_apply_patch(_git_diff(tmp_path, {**before, "a.txt": LINES}, {**after, "a.txt": edited}))

    assert patch == (
        "*** Begin Patch\n"
        "*** Update File: a.txt\n"
        "@@\n line 1\n line 2\n-line 3\n+3\n line 4\n line 5\n line 6\n"
        "@@\n line 27\n line 28\n line 29\n-line 30\n+30\n line 31\n line 32\n line 33\n"
        "*** Delete File: gone.py\n"
        "*** Update File: keep.py\n"
        "@@\n a = 1\n-b = 2\n+b = 3\n"
        "*** Add File: new/dir/made.py\n"
        "+def f():\n+    return 1\n"
        "*** End Patch\n"
    )


REFUSED: dict[str, tuple[Files, Files, tuple[str, ...], str]] = {
    "binary": ({"b.bin": b"\x00\x01"}, {"b.bin": b"\x00\x02"}, (), "a binary diff"),
    "new version without final newline": ({"n.txt": b"a\nb\n"}, {"n.txt": b"a\nB"}, (), "ends without a newline"),
    "added file without final newline": ({"o.txt": b"o\n"}, {"n.txt": b"a"}, (), "ends without a newline"),
    "pure insertion without context": ({"i.txt": LINES}, {"i.txt": LINES + b"more\n"}, ("-U0",), "no context lines"),
    "rename": ({"r.txt": LINES}, {"r.txt": None, "s.txt": LINES}, ("-M",), "a rename"),
}


@pytest.mark.parametrize(("before", "after", "options", "problem"), REFUSED.values(), ids=REFUSED.keys())
def test_diffs_apply_patch_cannot_express_are_refused(
    tmp_path: Path, before: Files, after: Files, options: tuple[str, ...], problem: str
) -> None:
    diff = _git_diff(tmp_path, before, after, *options)

    with pytest.raises(builder.PatchConversionError, match=problem):
        builder.unified_to_apply_patch(diff)


def test_mode_changes_are_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"run.sh": b"echo hi\n"})
    (repo / "run.sh").chmod(0o755)

    with pytest.raises(builder.PatchConversionError, match="a file mode change"):
        builder.unified_to_apply_patch(_git(repo, "diff").decode())


def test_text_that_is_not_a_git_diff_is_refused() -> None:
    with pytest.raises(builder.PatchConversionError, match="not a git diff"):
        builder.unified_to_apply_patch("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")


@pytest.mark.parametrize("name", SHIPPED)
def test_committed_cassette_is_what_the_builder_makes_now(tmp_path: Path, name: str) -> None:
    committed = REPO_ROOT / "tasks" / name / builder.REPLAY_CASSETTE
    cassette = load_cassette(committed)
    sources = builder.source_dir(name)

    if builder.is_real_source(sources):  # rebuilding needs the upstream repo: regenerate from the committed diff
        source = json.loads((sources / "task.json").read_text())
        diff = (REPO_ROOT / "tasks" / name / "diff.patch").read_bytes()
        rebuilt = builder.cassette_bytes(builder.build_cassette(name, source, diff))
    else:
        builder.build_task(sources, tmp_path / name)
        rebuilt = (tmp_path / name / builder.REPLAY_CASSETTE).read_bytes()

    assert rebuilt == committed.read_bytes(), "stale cassette: run python scripts/build_example_tasks.py"
    assert cassette.task_id == name and cassette.model == builder.REPLAY_MODEL
    reference = builder.unified_to_apply_patch((REPO_ROOT / "tasks" / name / "diff.patch").read_text())
    assert [
        item.get("input") for turn in cassette.turns for item in turn.output if item["type"] == "custom_tool_call"
    ] == [reference]
    assert all(turn.usage.input_tokens > 0 and turn.usage.output_tokens > 0 for turn in cassette.turns)


def _check_replay(task_dir: Path, scratch: Path) -> Any:  # the builder's Report (a script, not a module mypy sees)
    task = load_task(task_dir)
    report = builder.Report(task.name)
    builder.check_replay(task, report, task.hidden_files(), scratch)
    return report


@pytest.mark.codex
@pytest.mark.parametrize("name", EXAMPLES)
def test_codex_replaying_the_cassette_makes_the_reference_change(tmp_path: Path, codex_bin: Path, name: str) -> None:
    report = _check_replay(REPO_ROOT / "tasks" / name, tmp_path / "replay")

    assert report.ok and not report.skipped, report.render()
    assert [row.check for row in report.rows][-2:] == ["replay = diff.patch", "replay: all pass"]


@pytest.mark.codex
def test_a_tampered_cassette_fails_the_replay_check(tmp_path: Path, codex_bin: Path) -> None:
    task_dir = tmp_path / "fix-off-by-one"
    shutil.copytree(REPO_ROOT / "tasks" / task_dir.name, task_dir)
    cassette_path = task_dir / builder.REPLAY_CASSETTE
    cassette = json.loads(cassette_path.read_text())
    patch = cassette["turns"][1]["output"][0]
    patch["input"] = patch["input"].replace("-(-total_items // per_page)", "total_items // per_page + 1")
    cassette_path.write_text(json.dumps(cassette))

    report = _check_replay(task_dir, tmp_path / "replay")

    failed = {row.check: row.detail for row in report.rows if not row.ok}
    assert set(failed) == {"cassette current", "replay: commands exit 0", "replay = diff.patch", "replay: all pass"}, (
        report.render()
    )
    assert failed["replay: commands exit 0"] == "call_look=0, call_tests=1", "the repo's own tests fail too"
    assert failed["replay = diff.patch"] == "differ: pager/core.py"


def test_without_codex_the_replay_is_skipped_not_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESHOT_CODEX_BIN", str(tmp_path / "no-codex"))

    report = _check_replay(REPO_ROOT / "tasks" / "fix-off-by-one", tmp_path / "replay")

    assert [(row.check, row.mark) for row in report.rows] == [
        ("cassette loads", "ok"),
        ("cassette current", "ok"),
        ("codex replay", "SKIPPED"),
    ]
    assert "(1 check(s) SKIPPED)" in report.render()
