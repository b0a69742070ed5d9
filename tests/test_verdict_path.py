"""The verdict path end to end in one process: ``run_trial`` with the real local sandbox and a command
agent, from the agent's files to the outcome (no pytest subprocess around it, so it stays fast
enough for ``scripts/mutation-test``). The hidden test checks the scored tree itself, so a change
to how the workspace is read or written fails here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_oneshot.agent.builtin import CommandAgent
from pytest_oneshot.sandbox.local import LocalSandbox
from pytest_oneshot.task import load_task
from pytest_oneshot.trial import TrialConfig, TrialResult, run_trial

FIX = "sed -i 's/a - b/a + b/' calc/__init__.py"
# The hidden test checks the scored tree: the agent's new files (an executable, a symlink, a
# nested file), its deletion and its edit are all there, with their modes.
TREE_TEST = """\
import os

from calc import add


def test_zero():
    assert add(0, 0) == 0


def test_add():
    assert add(2, 3) == 5


def test_tree():
    assert not os.path.exists("notes.txt")
    assert open("docs/deep/new.txt").read() == "new\\n"
    assert os.access("run.sh", os.X_OK) and not os.access("docs/deep/new.txt", os.X_OK)
    assert os.readlink("latest") == "docs/deep/new.txt"
"""
TREE_CHANGE = (
    f"{FIX} && rm notes.txt && mkdir -p docs/deep && echo new > docs/deep/new.txt && "
    "printf '#!/bin/sh\\n' > run.sh && chmod +x run.sh && ln -s docs/deep/new.txt latest && echo debug > debug.log"
)


@pytest.fixture
def trial(make_task: Callable[..., Path], tmp_path: Path) -> Callable[..., TrialResult]:
    """Run one trial of a "fix add" task (``overrides``: tb_meta.json keys) with ``command`` as the agent."""

    def run(
        command: str, *, min_score: float | None = None, hidden: str | None = None, phases: list[str] | None = None,
        **overrides: Any,
    ) -> TrialResult:  # fmt: skip
        name = f"task{len(list(tmp_path.glob('task*')))}"
        task_dir = make_task(tmp_path / name, files={"notes.txt": "old\n", ".gitignore": "*.log\n"}, **overrides)
        if hidden is not None:
            (task_dir / "tests" / "test_calc.py").write_text(hidden)
        config = TrialConfig(
            task=load_task(task_dir),
            agent=CommandAgent({"cmd": command}),
            sandbox_factory=LocalSandbox,
            item_id=f"{name}[command-r0]",
            run_id="r",
            run_dir=tmp_path / "runs" / name,
            cache_dir=tmp_path / "cache",
            min_score=min_score,
        )
        return run_trial(config, on_phase=lambda phase, _: phases.append(phase) if phases is not None else None)

    return run


def test_an_honest_fix_passes_and_its_change_is_scored_as_left(trial: Callable[..., TrialResult]) -> None:
    f2p = ["tests/test_calc.py::test_add", "tests/test_calc.py::test_tree"]
    phases: list[str] = []
    result = trial(TREE_CHANGE, hidden=TREE_TEST, tests={"fail_to_pass": f2p}, phases=phases)
    assert phases == list(result.phases) == ["prepare", "sandbox", "agent", "diff", "tests", "score"]
    assert (result.outcome, result.resolved, result.score) == ("passed", True, 1.0), result.reason
    assert result.reason == "fail_to_pass 2/2 passed, pass_to_pass 1/1 passed"
    assert {rubric.id: rubric.score for rubric in result.rubrics} == {"correctness": 1.0, "quality": None}
    # debug.log is new and ignored by the start commit's .gitignore: not part of the change
    assert result.changed_files == ["calc/__init__.py", "docs/deep/new.txt", "latest", "notes.txt", "run.sh"]
    diff = (Path(result.run_dir) / "diff.patch").read_text()
    assert "-    return a - b\n+    return a + b\n" in diff and "deleted file mode 100644" in diff
    assert "new file mode 100755" in diff and "new file mode 120000" in diff
    assert result.diff_bytes == len(diff.encode()) and result.diff_lines == diff.count("\n")


def test_doing_nothing_fails_and_scores_zero(trial: Callable[..., TrialResult]) -> None:
    result = trial("true")
    assert (result.outcome, result.resolved, result.score) == ("failed", False, 0.0)
    assert result.reason == (
        "not resolved: fail_to_pass 0/1 passed, pass_to_pass 1/1 passed; tests/test_calc.py::test_add failed"
    )
    assert result.changed_files == [] and result.diff_bytes == 0


def test_breaking_a_pass_to_pass_test_zeroes_the_score(trial: Callable[..., TrialResult]) -> None:
    result = trial("printf 'def add(a, b):\\n    return 5\\n' > calc/__init__.py")
    assert (result.outcome, result.score) == ("failed", 0.0)
    assert result.tests is not None and result.tests.statuses == {
        "tests/test_calc.py::test_add": "passed",
        "tests/test_calc.py::test_zero": "failed",
    }


def test_a_skipped_graded_test_is_not_a_pass(trial: Callable[..., TrialResult]) -> None:
    result = trial("printf 'import pytest\\n\\ndef add(a, b):\\n    pytest.skip(\"later\")\\n' > calc/__init__.py")
    assert (result.outcome, result.resolved) == ("failed", False)
    assert "tests/test_calc.py::test_add skipped" in result.reason


def test_a_graded_test_that_does_not_exist_fails_the_item(trial: Callable[..., TrialResult]) -> None:
    """pytest answers an unknown node id with a usage error (exit 4) before running anything."""
    result = trial(FIX, tests={"fail_to_pass": ["tests/test_calc.py::test_add", "tests/test_calc.py::test_gone"]})
    assert (result.outcome, result.resolved, result.score) == ("failed", False, 0.0)
    assert result.reason == "the test run cannot be trusted: the test command ran no tests (exit code 4)"
    assert result.tests is not None and set(result.tests.statuses.values()) == {"missing"}


def test_an_exit_status_that_disagrees_with_the_results_fails_the_item(trial: Callable[..., TrialResult]) -> None:
    """The code under test turns pytest's exit 1 into 0 after the results are written."""
    exit_zero = "import atexit, os\\natexit.register(os._exit, 0)\\n\\ndef add(a, b):\\n    return a - b\\n"
    result = trial(f"printf '{exit_zero}' > calc/__init__.py")
    assert result.outcome == "failed"
    assert result.reason == (
        "the test run cannot be trusted: pytest's recorded exit status 1 is not the command's exit code 0"
    )
    assert result.score == 0.0 and result.resolved is False


def test_a_failing_setup_command_fails_the_item(trial: Callable[..., TrialResult]) -> None:
    result = trial(FIX, tests={"setup": ["true", "exit 3"]})
    assert result.outcome == "failed"
    assert result.reason == "the test run cannot be trusted: tests.setup `exit 3` failed (exit 3); see tests.log"
    assert result.tests is not None and set(result.tests.statuses.values()) == {"missing"}


def test_a_score_below_the_min_score_fails(trial: Callable[..., TrialResult]) -> None:
    """Resolved, but no rubric is scored (``tests.rubric_id`` unset): a min score cannot be met."""
    result = trial(FIX, min_score=0.5, tests={"rubric_id": None})
    assert (result.outcome, result.resolved, result.score, result.min_score) == ("failed", True, None, 0.5)
    assert result.reason == "resolved, but no rubric is scored to compare with min score 0.5"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"lm": {"instructions": " "}}, "the task has no instructions (lm.instructions or LM_INSTRUCTIONS.md)"),
        ({"tests": {"fail_to_pass": [], "pass_to_pass": []}}, "the task has no hidden tests"),
    ],
)
def test_a_task_nothing_can_score_is_an_error_not_a_failure(
    trial: Callable[..., TrialResult], overrides: dict[str, Any], reason: str
) -> None:
    result = trial(FIX, **overrides)
    assert (result.outcome, result.resolved, result.tests) == ("error", None, None)
    assert reason in result.reason, result.reason
