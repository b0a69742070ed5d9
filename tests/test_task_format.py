"""tb_meta.json in every form loads; every kind of malformed task names its file and field."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.task import load_task


def test_created_form_reference_tasks_load(reference_tasks: list[Path]) -> None:
    assert len(reference_tasks) == 6
    for task_dir in reference_tasks:
        task = load_task(task_dir)
        assert task.spec.repo.git_url.startswith("https://github.com/")
        assert len(task.spec.repo.start_commit_sha) == 40
        assert task.instructions.strip()
        assert task.spec.evaluation.rubrics == []  # created form: empty placeholders, no free rubric


def test_prepared_form_with_inline_test_scripts(tmp_path: Path) -> None:
    meta = {
        "task_id": "add-hello_20250101_000000",
        "metadata": {"title": "Add hello", "tags": ["docs"]},
        "repo": {
            "git_url": "/nowhere",
            "branch": "main",
            "start_commit_sha": "a" * 40,
            "end_commit_sha": "b" * 40,
            "subdir": "",
            "sparse_checkout": [],
        },
        "lm": {"instructions": "Add hello"},
        "evaluation": {
            "rubrics": [
                {"id": "task_completion", "criterion": "done", "weight": 0.4, "evaluation_criteria": ["x"]},
                {"id": "testing", "criterion": "tested", "weight": 0.6},
            ],
            "test_scripts": [
                {"path": "tests/test_hello.py", "rubric_id": "testing", "content": "def test_x():\n    pass\n"}
            ],
        },
        "sensitivity": {"level": "safe"},
    }
    (tmp_path / "tb_meta.json").write_text(json.dumps(meta))
    task = load_task(tmp_path)
    assert task.hidden_files() == {"tests/test_hello.py": b"def test_x():\n    pass\n"}
    assert [rubric.weight for rubric in task.spec.evaluation.rubrics] == [0.4, 0.6]


def test_legacy_keys_are_mapped(tmp_path: Path) -> None:
    meta = {
        "id": "old-task",
        "title": "Old",
        "tags": ["a"],
        "lm_instructions": "do it",
        "repository": {"clone_url": "https://example.invalid/r.git", "branch": "dev", "commit": "c" * 40},
    }
    (tmp_path / "tb_meta.json").write_text(json.dumps(meta))
    spec = load_task(tmp_path).spec
    assert (spec.task_id, spec.metadata.title, spec.metadata.tags) == ("old-task", "Old", ["a"])
    assert (spec.repo.git_url, spec.repo.branch, spec.repo.start_commit_sha) == (
        "https://example.invalid/r.git",
        "dev",
        "c" * 40,
    )
    assert spec.lm.instructions == "do it"


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda m: m.pop("task_id"), "task_id", "required field is missing"),
        (lambda m: m["repo"].pop("start_commit_sha"), "repo.start_commit_sha", "required field is missing"),
        (lambda m: m["limits"].update(agent_timeout_sec="soon"), "limits.agent_timeout_sec", "'soon'"),
        (lambda m: m["evaluation"]["rubrics"][0].update(weight=-1), "evaluation.rubrics[0].weight", "greater than 0"),
        (lambda m: m["tests"].update(rubric_id="nope"), "tests.rubric_id", "unknown rubric 'nope'"),
        (
            lambda m: m["evaluation"].update(test_scripts=[{"path": "t.py", "rubric_id": "ghost", "content": ""}]),
            "evaluation.test_scripts[0].rubric_id",
            "unknown rubric 'ghost'",
        ),
        (lambda m: m["repo"].update(bundle="missing.bundle"), "repo.bundle", "bundle file not found"),
        (lambda m: m.update(tset={}), "tset", "unknown field"),
        (
            lambda m: m["tests"].update(pass_to_pass=["tests/test_calc.py::test_add"]),
            "tests.pass_to_pass",
            "also listed",
        ),
        (lambda m: m.update(metadata="a title"), "metadata", "must be an object (got 'a title')"),
        (lambda m: m.update(metadata=["bugfix"]), "metadata", "must be an object (got ['bugfix'])"),
        (lambda m: m.update(lm="do it", lm_instructions="do it"), "lm", "must be an object"),
        (lambda m: m["repo"].update(branch="bad..name"), "repo.branch", "not a valid git branch name"),
    ],
    ids=[
        "no-task-id",
        "no-start-sha",
        "wrong-type",
        "bad-weight",
        "unknown-rubric",
        "unknown-script-rubric",
        "missing-bundle",
        "typo-key",
        "f2p-and-p2p",
        "metadata-string",
        "metadata-list",
        "lm-string-with-legacy-key",
        "bad-branch",
    ],
)
def test_malformed_task_names_file_and_field(
    make_task: Callable[..., Path], tmp_path: Path, mutate: Callable[[dict], object], field: str, message: str
) -> None:
    task_dir = make_task(tmp_path / "bad")
    meta = json.loads((task_dir / "tb_meta.json").read_text())
    mutate(meta)
    (task_dir / "tb_meta.json").write_text(json.dumps(meta))
    with pytest.raises(TaskFormatError) as excinfo:
        load_task(task_dir)
    assert excinfo.value.file == str(task_dir / "tb_meta.json")
    assert excinfo.value.field == field
    assert message in str(excinfo.value)


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "tb_meta.json").write_text('{"task_id": "x",')
    with pytest.raises(TaskFormatError, match=r"tb_meta.json: not valid JSON"):
        load_task(tmp_path)


def test_legacy_repository_of_the_wrong_type_names_it(tmp_path: Path) -> None:
    (tmp_path / "tb_meta.json").write_text(json.dumps({"task_id": "x", "repository": "https://example.invalid/r"}))
    with pytest.raises(TaskFormatError, match=r"tb_meta.json: repository: must be an object"):
        load_task(tmp_path)


def test_a_tb_meta_json_directory_is_a_collection_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "tasks" / "odd" / "tb_meta.json").mkdir(parents=True)
    result = pytester.runpytest("tasks", "--collect-only", "--oneshot-agent=nop")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*tasks/odd/tb_meta.json: is a directory; it must be a JSON file*"])


@pytest.mark.parametrize(
    "name",
    ["main", "feature/x", "release-1.2", "a@b", "bad..name", "x.lock", "x/.hidden", "x.", "x/", "a//b", "a b",
     "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a@{b", "-x", "HEAD", "tab\tname"],
)  # fmt: skip
def test_branch_rule_agrees_with_git(name: str, tmp_path: Path) -> None:
    accepted_by_git = (
        subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True).returncode == 0
    )
    spec = {"task_id": "x", "repo": {"branch": name, "start_commit_sha": "a" * 40}}
    (tmp_path / "tb_meta.json").write_text(json.dumps(spec))
    try:
        load_task(tmp_path)
    except TaskFormatError as exc:
        assert not accepted_by_git and exc.field == "repo.branch", exc
    else:
        assert accepted_by_git
