"""End to end on the shipped example tasks: oracle passes, nop fails, reports say so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _without_index_lines(diff: str) -> list[str]:
    """``git diff --binary`` writes full blob ids on ``index`` lines; the change itself must match."""
    return [line for line in diff.strip().splitlines() if not line.startswith("index ")]


SHIPPED = sorted(path.parent.name for path in (Path(__file__).parent.parent / "tasks").glob("*/tb_meta.json"))


def test_oracle_passes_every_shipped_task(shipped_tasks: Path, run_and_parse: Callable[..., object]) -> None:
    run = run_and_parse("tasks", "--oneshot-agent=oracle")
    run.result.assert_outcomes(passed=len(SHIPPED))
    items = run.items()
    assert sorted(items) == [f"{name}[oracle-r0]" for name in SHIPPED]
    for name, item in items.items():
        assert item["outcome"] == "passed" and item["resolved"] is True, name
        tests = item["tests"]
        assert tests["statuses"] and all(status == "passed" for status in tests["statuses"].values())
        rubrics = {rubric["id"]: rubric for rubric in item["rubrics"]}
        assert rubrics["correctness"]["score"] == 1.0
        assert rubrics["code_quality"]["score"] is None  # no test and no judge: unscored, not 0 or 1
        assert item["score"] == 1.0
        run_dir = Path(item["run_dir"])
        for artifact in ("diff.patch", "agent/agent.log", "tests.log", "evaluation_results.json", "scoring_results.md"):
            assert (run_dir / artifact).is_file(), artifact
        task_diff = (shipped_tasks / item["task_name"] / "diff.patch").read_text()
        assert _without_index_lines((run_dir / "diff.patch").read_text()) == _without_index_lines(task_diff)
        saved = json.loads((run_dir / "evaluation_results.json").read_text())
        assert saved["evaluation"]["total_score"] == 1.0  # OneShot-compatible block
        assert saved["evaluation"]["rubrics"]["code_quality"]["score"] is None
    props = run.properties("fix-off-by-one")
    fix = items["fix-off-by-one[oracle-r0]"]["tests"]
    assert props["oneshot.outcome"] == "passed"
    assert props["oneshot.rubric.code_quality"] == "unscored"
    assert (
        props["oneshot.fail_to_pass.passed"]
        == props["oneshot.fail_to_pass.total"]
        == str(sum(1 for kind in fix["kinds"].values() if kind == "fail_to_pass"))
    )
    assert float(props["oneshot.phase.tests"]) > 0
    summary = {row["task"]: row for row in run.report["summary"]}
    assert summary["fix-off-by-one"]["pass@1"] == 1.0


def test_nop_fails_every_shipped_task(shipped_tasks: Path, run_and_parse: Callable[..., object]) -> None:
    run = run_and_parse("tasks", "--oneshot-agent=nop")
    run.result.assert_outcomes(failed=len(SHIPPED))
    for name, item in run.items().items():
        assert item["outcome"] == "failed" and item["resolved"] is False, name
        assert item["score"] == 0.0
        assert item["diff_bytes"] == 0
        statuses = item["tests"]["statuses"]
        kinds = item["tests"]["kinds"]
        assert all(statuses[t] != "passed" for t, kind in kinds.items() if kind == "fail_to_pass"), name
        assert all(statuses[t] == "passed" for t, kind in kinds.items() if kind == "pass_to_pass"), name
    run.result.stdout.fnmatch_lines(["*oneshot results*", "fix-off-by-one*nop*0/1*failed*0.00*"])


def test_malformed_tasks_are_collection_errors_and_valid_tasks_still_run(
    shipped_tasks: Path, pytester: pytest.Pytester
) -> None:
    broken = {"bad-json": "{", "no-repo": json.dumps({"task_id": "no-repo"})}
    for name, text in broken.items():
        (shipped_tasks / name).mkdir()
        (shipped_tasks / name / "tb_meta.json").write_text(text)
    result = pytester.runpytest_subprocess(
        "tasks/bad-json", "tasks/no-repo", "tasks/fix-off-by-one", "--oneshot-agent=oracle"
    )
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*tasks/bad-json/tb_meta.json: not valid JSON*",
            "*tasks/no-repo/tb_meta.json: repo: required field is missing*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_xdist_runs_share_one_run_dir_and_report(shipped_tasks: Path, run_and_parse: Callable[..., object]) -> None:
    run = run_and_parse("tasks", "--oneshot-agent=oracle", "-n", "2")
    run.result.assert_outcomes(passed=len(SHIPPED))
    run_dirs = {Path(item["run_dir"]).parent for item in run.items().values()}
    assert len(run_dirs) == 1 and run_dirs.pop().name == run.report["run_id"]


def test_rollouts_and_models_multiply_items(shipped_tasks: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "tasks/fix-off-by-one",
        "--collect-only",
        "-q",
        "--oneshot-model=m1",
        "--oneshot-model=m2",
        "--oneshot-rollouts=2",
    )
    result.stdout.fnmatch_lines(
        [f"tasks/fix-off-by-one::fix-off-by-one[[]{model}-r{r}[]]" for model in ("m1", "m2") for r in (0, 1)]
    )


def test_tags_are_registered_markers_and_k_selects(shipped_tasks: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "tasks", "--collect-only", "-q", "-m", "bugfix and not upstream", "-W", "error::pytest.PytestUnknownMarkWarning"
    )
    result.stdout.fnmatch_lines(
        ["tasks/fix-off-by-one::fix-off-by-one[[]replay-r0[]]", f"*1/{len(SHIPPED)} tests collected*"]
    )
    result = pytester.runpytest("tasks", "--collect-only", "-q", "-k", "document")
    result.stdout.fnmatch_lines(["tasks/document-cli::*", f"*1/{len(SHIPPED)} tests collected*"])


def test_last_failed_reruns_only_failures(shipped_tasks: Path, pytester: pytest.Pytester) -> None:
    (shipped_tasks / "document-cli" / "diff.patch").write_text("not a patch\n")  # the oracle cannot apply it
    first = pytester.runpytest_subprocess("tasks", "--oneshot-agent=oracle")
    first.assert_outcomes(passed=len(SHIPPED) - 1, failed=1)
    second = pytester.runpytest_subprocess("tasks", "--oneshot-agent=oracle", "--lf")
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(["agent_error: git apply of the reference diff exited*"])


def test_unknown_agent_or_sandbox_fails_fast_with_known_names(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--oneshot-agent=gpt-wizard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown agent 'gpt-wizard' (known: codex, command, nop, oracle*"])
    result = pytester.runpytest("--oneshot-sandbox=moon")
    result.stderr.fnmatch_lines(["*unknown sandbox 'moon' (known: *local*"])


@pytest.mark.parametrize(
    ("module_text", "problem"),
    [
        ("import no_such_dependency_xyz\n", "is not installed: No module named 'no_such_dependency_xyz'"),
        ("raise RuntimeError('boom at import')\n", "failed to load from broken_sandbox:Sandbox: RuntimeError: boom"),
        ("class Sandbox:\n    pass\n", "has no cleanup_stale(options) (see SandboxFactory)"),
    ],
    ids=["missing-dependency", "raises-at-import", "not-a-factory"],
)
def test_a_sandbox_plugin_that_fails_to_import_is_a_usage_error(
    pytester: pytest.Pytester, module_text: str, problem: str
) -> None:
    pytester.makepyfile(broken_sandbox=module_text)
    pytester.makeconftest(
        "def pytest_oneshot_register(registries):\n"
        "    registries.sandbox.register('broken', 'broken_sandbox:Sandbox')\n"
    )
    result = pytester.runpytest_subprocess("--oneshot-sandbox=broken", "--oneshot-agent=nop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--oneshot-sandbox: sandbox 'broken' {problem}*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_header_shows_effective_settings(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESHOT_ROLLOUTS", "3")
    pytester.makeini("[pytest]\noneshot_agent = nop\n")
    result = pytester.runpytest("--collect-only", "--oneshot-sandbox=local")
    result.stdout.fnmatch_lines(["oneshot: agent=nop model=- sandbox=local rollouts=3 run=*runs*"])


def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--oneshot-rollouts=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--oneshot-rollouts: must be >= 1 (got '0')*"])


def test_a_runs_dir_that_cannot_be_created_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "afile").write_text("a regular file, not a directory\n")
    result = pytester.runpytest("--oneshot-runs-dir=afile/runs", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--oneshot-runs-dir: cannot create */afile/runs: */afile is not a directory"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_conftest_can_register_an_agent(shipped_tasks: Path, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
from pytest_oneshot.agent import AgentResult


class ApplyReference:
    name = "apply-reference"
    network = "none"
    uses_model = False

    def __init__(self, options):
        pass

    def mounts(self):
        return {}

    def run(self, sandbox, request):
        applied = sandbox.exec(["git", "apply", "-"], stdin=request.task.reference_patch())
        return AgentResult("completed" if applied.ok else "agent_error", applied.text())


def pytest_oneshot_register(registries):
    registries.agent.register("apply-reference", ApplyReference)
"""
    )
    result = pytester.runpytest_subprocess("tasks/fix-off-by-one", "--oneshot-agent=apply-reference")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*fix-off-by-one*apply-reference*1/1*passed*"])


def test_what_an_agent_finds_once_is_found_once_per_session_under_xdist(
    shipped_tasks: Path, pytester: pytest.Pytester
) -> None:
    """An agent factory's session options (the codex binary, found through npm) are found by the
    controller, once, and every worker's agent is made from them."""
    pytester.makeconftest(
        """
import os
from pathlib import Path

from pytest_oneshot.agent import AgentResult

LOG = Path(__file__).parent / "found.log"


class FindsOnce:
    name = "finds-once"
    network = "none"
    uses_model = False

    @staticmethod
    def session_options(options):
        with LOG.open("a") as log:
            log.write(f"found in {os.getpid()}\\n")
        return {**options, "found": "the-binary"}

    def __init__(self, options):
        with LOG.open("a") as log:
            log.write(f"made in {os.getpid()} with {options.get('found')}\\n")

    def mounts(self):
        return {}

    def run(self, sandbox, request):
        applied = sandbox.exec(["git", "apply", "-"], stdin=request.task.reference_patch())
        return AgentResult("completed" if applied.ok else "agent_error", applied.text())


def pytest_oneshot_register(registries):
    registries.agent.register("finds-once", FindsOnce)
"""
    )
    result = pytester.runpytest_subprocess(
        "tasks/fix-off-by-one", "--oneshot-agent=finds-once", "--oneshot-rollouts=4", "-n", "2"
    )
    result.assert_outcomes(passed=4)
    lines = (pytester.path / "found.log").read_text().splitlines()
    found = [line for line in lines if line.startswith("found")]
    made = [line for line in lines if line.startswith("made")]
    assert len(found) == 1, lines
    assert len(made) == 2 and all(line.endswith("with the-binary") for line in made), lines
    assert found[0].removeprefix("found in ") not in {line.split()[2] for line in made}, "found by the controller"


def test_min_score_needs_a_scored_rubric(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add", tests={"rubric_id": None})  # no rubric is test-scored
    run = run_and_parse("tasks", "--oneshot-agent=oracle", "--oneshot-min-score=0.5")
    run.result.assert_outcomes(failed=1)
    item = run.items()["fix-add[oracle-r0]"]
    assert item["resolved"] is True and item["score"] is None
    assert "no rubric is scored to compare with min score 0.5" in item["reason"]
    run = run_and_parse("tasks", "--oneshot-agent=oracle")  # without the bar, resolved is enough
    run.result.assert_outcomes(passed=1)


def test_a_real_model_without_an_api_key_is_a_clear_error(
    shipped_tasks: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = pytester.runpytest_subprocess("tasks/fix-off-by-one", "--oneshot-model=gpt-5-mini")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["prepare: no API key for https://api.openai.com/v1: set OPENAI_API_KEY*"])


def test_phase_and_result_hooks_reach_a_conftest(shipped_tasks: Path, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import json
seen = []

def pytest_oneshot_phase(item, phase, duration):
    seen.append(phase)

def pytest_oneshot_trial_result(item, result):
    with open("hooks.json", "w") as out:
        json.dump({"phases": seen, "outcome": result.outcome, "item": item.name}, out)
"""
    )
    result = pytester.runpytest_subprocess("tasks/fix-off-by-one", "--oneshot-agent=oracle")
    result.assert_outcomes(passed=1)
    hooks = json.loads((pytester.path / "hooks.json").read_text())
    assert hooks == {
        "phases": ["prepare", "sandbox", "agent", "diff", "tests", "score"],
        "outcome": "passed",
        "item": "fix-off-by-one[oracle-r0]",
    }
