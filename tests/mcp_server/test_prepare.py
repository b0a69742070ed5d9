"""``oneshot prepare``: created tasks (ours, OneShot's) into prepared ones the plugin runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_server import capture
from mcp_server.prepare import prepared_slug, rubrics_from_template
from pytest_oneshot.task import load_task
from tests.mcp_server.conftest import FIXED, NEW_TEST


def _oneshot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_oneshot.cli", *args], capture_output=True, text=True)


def _created(repo: Path) -> Path:
    capture.start_task(repo, "Fix add", "calc.add subtracts")
    (repo / "calc" / "__init__.py").write_text(FIXED)
    with open(repo / "tests" / "test_calc.py", "a") as handle:
        handle.write(NEW_TEST)
    return Path(capture.end_task(repo, "add adds now")["task_dir"])


def test_prepared_form(make_repo: Callable[..., Path], tasks_dir: Path, tmp_path: Path) -> None:
    repo = make_repo()
    created = _created(repo)
    # From the user's clone instead of the task's bundle: the same start commit.
    done = _oneshot("prepare", str(created), "--out", str(tmp_path / "prepared"), "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    prepared = Path(done.stdout.strip())
    assert prepared.name == "fix-add"
    meta = json.loads((prepared / "tb_meta.json").read_text())
    assert meta["lm"]["instructions"] == "calc.add subtracts\n\nWhen done: add adds now"
    assert [r["id"] for r in meta["evaluation"]["rubrics"]] == ["correctness", "content", "location", "clarity"]
    assert "content_rubric" not in meta["evaluation"] and meta["tests"]["rubric_id"] == "correctness"
    assert "tests/test_calc.py" not in (prepared / "diff.patch").read_text(), "the hidden tests are split out"
    assert (prepared / "hidden" / "tests" / "test_calc.py").read_text().endswith(NEW_TEST)
    assert load_task(prepared).spec.tests.fail_to_pass == ["tests/test_calc.py::test_add"]
    again = _oneshot("prepare", str(created), "--out", str(tmp_path / "prepared"))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_oneshot_reference_tasks_without_their_repo_get_a_clear_error(
    reference_tasks: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # github.com through a dead loopback port
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    task = shutil.copytree(reference_tasks[0], tmp_path / reference_tasks[0].name)
    done = _oneshot("prepare", str(task), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot fetch start commit" in done.stderr and "pass --repo" in done.stderr, done.stderr
    assert list((tmp_path / "out").iterdir()) == [], "nothing half-written"


def test_slug_and_rubric_template(tmp_path: Path) -> None:
    assert prepared_slug("my_task_x") == "my_task_x", "the original cut this to 'my'"
    assert prepared_slug("add-hello_20250823_121259") == "add-hello"
    template = tmp_path / "rubric.md"
    template.write_text("# Evaluation Rubric\n\n## Content\n- [ ] The README says hello\n- [x] Once\n\n## Clarity\n")
    assert rubrics_from_template(template, has_tests=False) == [
        {
            "id": "content",
            "criterion": "Content: The README says hello",
            "evaluation_criteria": ["The README says hello", "Once"],
            "weight": 1.0,
        }
    ]
