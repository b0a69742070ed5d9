"""Overrides: one format per run or next to a task, applied to a copy, recorded; OneShot's formats still read."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.overrides import apply_overrides, convert_legacy, load_overrides
from pytest_oneshot.repo import glob_regex
from pytest_oneshot.task import load_task

# The agent records what it saw into the repo (so it is in its diff), then fixes the bug.
SEES = (
    '{ echo "instructions=$ONESHOT_INSTRUCTIONS"; echo "flag=$FLAG"; echo "key=${API_TOKEN:+set}"; ls docs keep.log; '
    "cat hint.txt; cat ~/.config/tool.toml; git log --format=%s -1; } > seen.txt 2>&1; "
    "sed -i 's/a - b/a + b/' calc/__init__.py"
)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", "--oneshot-json=report.json")
    report = pytester.path / "report.json"
    return result, json.loads(report.read_text()) if report.is_file() else {}


def _added_file(diff: str, name: str) -> str:
    """The text of a file the agent created, from its diff."""
    part = diff.split(f"+++ b/{name}\n", 1)[1].split("\ndiff --git", 1)[0]
    return "\n".join(line[1:] for line in part.splitlines() if line.startswith("+"))


def test_run_overrides_reach_the_agent_and_leave_the_task_dir_alone(
    pytester: pytest.Pytester, make_task: Callable[..., Path]
) -> None:
    task = make_task(pytester.path / "fix-add", files={"docs/a.md": "a\n", "docs/sub/b.md": "b\n", "keep.log": "log\n"})
    (pytester.path / "tool.toml").write_text("answer = 42\n")
    overrides = {
        "instructions": "Make calc.add add.",
        "remove_paths": ["docs/**", "*.log"],
        "inject_files": [
            {"path": "hint.txt", "content": "look at calc/__init__.py\n"},
            {"path": "~/.config/tool.toml", "source": "tool.toml", "target": "sandbox"},
        ],
        "env": {"FLAG": "on", "API_TOKEN": "sk-canary0123456789abcdefghij"},
    }
    (pytester.path / "run.json").write_text(json.dumps(overrides))
    before = _tree_digest(task)

    result, report = _run(
        pytester, str(task), "--oneshot-agent=command", f"--oneshot-agent-cmd={SEES}", "--oneshot-overrides=run.json"
    )

    result.assert_outcomes(passed=1)
    assert _tree_digest(task) == before, "the task directory was modified"
    item = report["items"][0]
    diff = Path(item["run_dir"], "diff.patch").read_text()
    seen = _added_file(diff, "seen.txt")
    assert "instructions=Make calc.add add." in seen
    assert "flag=on" in seen and "key=set" in seen
    assert "No such file or directory" in seen and "docs" in seen and "keep.log" in seen  # removed
    assert "look at calc/__init__.py" in seen and "answer = 42" in seen
    assert "oneshot baseline" in seen or "oneshot overrides" in seen
    assert "hint.txt" not in item["changed_files"], "the injected file is part of the start, not the agent's change"
    assert item["changed_files"] == ["calc/__init__.py", "seen.txt"]
    recorded = json.loads(Path(item["run_dir"], "overrides.json").read_text())
    assert recorded == item["overrides"]
    assert recorded[0]["source"].endswith("run.json") and recorded[0]["env"] == {
        "FLAG": "on",
        "API_TOKEN": "<redacted>",
    }
    assert recorded[0]["inject_files"][1]["sha256"] == hashlib.sha256(b"answer = 42\n").hexdigest()
    assert "sk-canary" not in json.dumps(report)


def test_injected_files_cannot_stand_in_for_hidden_tests(
    pytester: pytest.Pytester, make_task: Callable[..., Path]
) -> None:
    """A forged test at a hidden test's path, shipped by an override into the start commit: the hidden test
    is still written last into the scoring sandbox, so doing nothing still fails."""
    task = make_task(pytester.path / "fix-add")
    forged = "def test_zero():\n    pass\n\n\ndef test_add():\n    pass\n"
    (task / "overrides.json").write_text(
        json.dumps({"inject_files": [{"path": "tests/test_calc.py", "content": forged}]})
    )

    result, report = _run(pytester, str(task), "--oneshot-agent=nop")

    result.assert_outcomes(failed=1)
    assert "test_add" in report["items"][0]["reason"]
    assert report["items"][0]["overrides"][0]["source"].endswith("overrides.json")


def test_a_source_inside_the_tasks_hidden_files_is_refused(
    pytester: pytest.Pytester, make_task: Callable[..., Path]
) -> None:
    task = make_task(pytester.path / "fix-add")
    (task / "overrides.json").write_text(
        json.dumps({"inject_files": [{"path": "answer.patch", "source": "diff.patch"}]})
    )

    result = pytester.runpytest("--collect-only", str(task))

    result.stdout.fnmatch_lines(["*overrides.json: inject_files?0?.source: *diff.patch is one of the task's hidden*"])


def test_repo_override_really_fetches_from_another_source(
    pytester: pytest.Pytester, make_task: Callable[..., Path], tmp_path: Path
) -> None:
    """A file:// mirror whose commit already adds: the nop agent passes only if the repo came from there."""
    task = make_task(pytester.path / "fix-add")
    mirror = tmp_path / "mirror"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "clone", "-q", "-b", "main", str(task / "repo.bundle"), str(mirror)], check=True)
    (mirror / "calc" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    subprocess.run([*git, "commit", "-qam", "fixed upstream"], cwd=mirror, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=mirror, check=True, capture_output=True, text=True)
    overrides = {"repo": {"git_url": mirror.as_uri(), "branch": "mirror", "start_commit_sha": sha.stdout.strip()}}
    (pytester.path / "run.toml").write_text(
        "[repo]\n" + "".join(f'{key} = "{value}"\n' for key, value in overrides["repo"].items())
    )

    without, _ = _run(pytester, str(task), "--oneshot-agent=nop")
    with_override, report = _run(pytester, str(task), "--oneshot-agent=nop", "--oneshot-overrides=run.toml")

    without.assert_outcomes(failed=1)
    with_override.assert_outcomes(passed=1)
    assert report["items"][0]["overrides"][0]["repo"] == overrides["repo"]


def test_evaluation_extend_and_replace(pytester: pytest.Pytester, make_task: Callable[..., Path]) -> None:
    task = make_task(pytester.path / "fix-add")
    extra = "from calc import add\n\n\ndef test_negative():\n    assert add(-2, -3) == -6\n"  # wrong on purpose
    extend = {
        "evaluation": {
            "mode": "extend",
            "rubrics": [{"id": "edge_cases", "weight": 0.5}],
            "test_scripts": [{"path": "tests/test_extra.py", "rubric_id": "edge_cases", "content": extra}],
            "tests": {"fail_to_pass": ["tests/test_extra.py"]},
        }
    }
    (pytester.path / "extend.json").write_text(json.dumps(extend))
    replace = {
        "evaluation": {
            "rubrics": [{"id": "only", "weight": 1}],
            "tests": {"fail_to_pass": ["tests/test_calc.py::test_add"], "rubric_id": "only"},
        }
    }
    (pytester.path / "replace.json").write_text(json.dumps(replace))

    extended, report = _run(pytester, str(task), "--oneshot-agent=oracle", "--oneshot-overrides=extend.json")
    extended.assert_outcomes(failed=1)
    item = report["items"][0]
    assert "tests/test_extra.py failed" in item["reason"]
    assert {rubric["id"] for rubric in item["rubrics"]} == {"correctness", "quality", "edge_cases"}
    assert "content" not in item["overrides"][0]["evaluation"]["test_scripts"][0]  # hidden: by digest only

    replaced, report = _run(pytester, str(task), "--oneshot-agent=oracle", "--oneshot-overrides=replace.json")
    replaced.assert_outcomes(passed=1)
    assert [rubric["id"] for rubric in report["items"][0]["rubrics"]] == ["only"]
    assert report["items"][0]["tests"]["kinds"] == {"tests/test_calc.py::test_add": "fail_to_pass"}


def test_unknown_keys_name_the_file_and_key(pytester: pytest.Pytester, make_task: Callable[..., Path]) -> None:
    task = make_task(pytester.path / "fix-add")
    (task / "overrides.json").write_text(json.dumps({"evaluation": {"rubricz": []}}))
    (pytester.path / "run.toml").write_text('instructions = "x"\nenvv = {}\n')

    own = pytester.runpytest("--collect-only", str(task))
    run = pytester.runpytest("--collect-only", str(task), "--oneshot-overrides=run.toml")

    own.stdout.fnmatch_lines(["*fix-add/overrides.json: evaluation.rubricz: unknown key*"])
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["ERROR: --oneshot-overrides: *run.toml: envv: unknown key*"])


@pytest.mark.parametrize(
    ("legacy", "renamed"),
    [
        (  # run_codex_box.sh's format
            {
                "prompt": "Make add add.",
                "overlay_repo_files": {"hint.txt": "x"},
                "overlay_files": {"notes.txt": "y"},
                "remove_repo_paths": ["docs"],
                "rubrics": [{"id": "only", "criterion": "c", "weight": 1}],
                "test_scripts": [
                    {"path": "tests/test_calc.py", "rubric_id": "only", "content": "def test_add(): pass\n"}
                ],
            },
            "prompt -> instructions",
        ),
        (  # the spec_bench guide's format
            {
                "lm_instructions": "Make add add.",
                "inject_files": [{"path": "hint.txt", "content": "x"}],
                "environment_variables": {"FLAG": "1"},
                "remove_repo_paths": ["docs"],
            },
            "environment_variables -> env",
        ),
    ],
)
def test_oneshots_formats_load_with_a_deprecation_warning(
    tmp_path: Path, make_task: Callable[..., Path], legacy: dict[str, Any], renamed: str
) -> None:
    task = load_task(make_task(tmp_path / "fix-add", files={"docs/a.md": "a\n"}))
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps(legacy))

    with pytest.warns(DeprecationWarning, match=rf"OneShot's overrides format is deprecated; rename .*{renamed}"):
        file = load_overrides(path)
    overridden = apply_overrides(task, file)

    assert overridden.instructions == "Make add add."
    assert overridden.overrides is not None and overridden.overrides.remove_paths == ("docs",)
    assert [path for path, _, _ in overridden.overrides.repo_files] == ["hint.txt"]
    assert task.instructions != overridden.instructions  # the loaded task itself is untouched


def test_legacy_model_settings_say_what_replaced_them() -> None:
    with pytest.raises(TaskFormatError, match=r"openai: OneShot's model settings are run options now"):
        convert_legacy({"lm_instructions": "x", "openai": {"model": "gpt-4"}})


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.log", "a.log", True),
        ("*.log", "sub/a.log", False),
        ("**/*.log", "sub/deep/a.log", True),
        ("**/*.log", "a.log", True),
        ("docs/**", "docs/x/y.md", True),
        ("docs/*", "docs/x/y.md", False),
        ("data/[!a]*.csv", "data/b1.csv", True),
        ("data/[!a]*.csv", "data/a1.csv", False),
        ("a?c", "abc", True),
    ],
)
def test_remove_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(path)) is matches


def test_a_replaced_evaluation_keeps_how_the_tests_run(tmp_path: Path) -> None:
    """A reward-mode task (a Harbor import, say) stays one: ``replace`` swaps what is graded, not the runner."""
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    tests = {"mode": "reward", "command": "bash /tests/test.sh", "report": "/logs/verifier/reward.txt"}
    (task_dir / "tb_meta.json").write_text(
        json.dumps({"task_id": "t", "repo": {"start_commit_sha": "a" * 40}, "tests": tests})
    )
    overrides = tmp_path / "o.json"
    overrides.write_text(
        json.dumps({"evaluation": {"rubrics": [{"id": "r", "weight": 1}], "tests": {"rubric_id": "r"}}})
    )
    replaced = apply_overrides(load_task(task_dir), load_overrides(overrides)).spec.tests
    assert (replaced.mode, replaced.command, replaced.report, replaced.rubric_id) == (*tests.values(), "r")
    overrides.write_text(json.dumps({"evaluation": {"tests": {"mode": "exit_code", "command": "sh check.sh"}}}))
    given = apply_overrides(load_task(task_dir), load_overrides(overrides)).spec.tests
    assert (given.mode, given.command, given.report) == ("exit_code", "sh check.sh", None)
