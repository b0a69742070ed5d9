"""The judge in whole pytest runs: the shipped tasks judged offline from their recorded answers, a judge
endpoint on 127.0.0.1 scoring an unscored rubric (cached, key never written), and judge failures as errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from judge_answers import answer, http_error, verdict_json

from pytest_oneshot.model.cassette import HttpError, Turn
from pytest_oneshot.model.scripted import ScriptedResponsesServer

SHIPPED = sorted(path.parent.name for path in (Path(__file__).parents[2] / "tasks").glob("*/tb_meta.json"))
CANARY = "sk-judge-" + "canary-5be1d0"  # split so no source file matches a search for it


@pytest.fixture
def judge_server() -> Iterator[ScriptedResponsesServer]:
    with ScriptedResponsesServer() as server:
        yield server


def _recorded_scores(tasks: Path) -> dict[str, float]:
    scores = {}
    for name in SHIPPED:
        cassette = json.loads((tasks / name / "cassettes" / "judge" / "replay.json").read_text())
        (turn,) = cassette["rubrics"]["code_quality"]["turns"]
        text = next(item for item in turn["output"] if item["type"] == "message")["content"][0]["text"]
        scores[name] = json.loads(text)["score"]
    return scores


def test_shipped_tasks_judge_code_quality_from_recorded_answers_by_default(
    shipped_tasks: Path, run_and_parse: Callable[..., Any], codex_bin: Path
) -> None:
    run = run_and_parse("tasks", "-n", "2")  # README command 1: no options
    run.result.assert_outcomes(passed=len(SHIPPED))
    recorded = _recorded_scores(shipped_tasks)
    for name, item in run.items().items():
        task = item["task_name"]
        rubrics = {rubric["id"]: rubric for rubric in item["rubrics"]}
        quality = rubrics["code_quality"]
        assert (quality["score"], quality["scored_by"], quality["judge_model"]) == (recorded[task], "judge", "replay")
        assert quality["reasoning"] and quality["evidence"], name
        diff = (Path(item["run_dir"]) / "diff.patch").read_text()
        assert all(quote in diff for quote in quality["evidence"]), name  # quotes from the diff it judged
        assert rubrics["correctness"]["scored_by"] == "tests" and rubrics["correctness"]["score"] == 1.0
        assert item["score"] == pytest.approx(0.7 + 0.3 * recorded[task])
        assert list(item["phases"])[-2:] == ["score", "judge"]
        saved = json.loads((Path(item["run_dir"]) / "evaluation_results.json").read_text())
        assert saved["evaluation"]["rubrics"]["code_quality"]["score"] == recorded[task]
        assert saved["lm_evaluation"]["rubric_scores"][0]["rubric_id"] == "code_quality"
        assert json.loads((Path(item["run_dir"]) / "judge.json").read_text())["rubrics"]["code_quality"]["score"]
    props = run.properties("fix-off-by-one")
    assert props["oneshot.rubric.code_quality"] == str(recorded["fix-off-by-one"])
    assert props["oneshot.rubric.code_quality.judge"] == "replay"
    mean = f"{0.7 + 0.3 * recorded['fix-off-by-one']:.2f}"
    run.result.stdout.fnmatch_lines([f"fix-off-by-one*replay*1/1*passed*{mean}*"])


def test_a_recorded_answer_never_judges_another_diff(
    shipped_tasks: Path, run_and_parse: Callable[..., Any], codex_bin: Path
) -> None:
    cassette_file = shipped_tasks / "fix-off-by-one" / "cassettes" / "judge" / "replay.json"
    cassette = json.loads(cassette_file.read_text())
    cassette["rubrics"]["code_quality"]["diff_sha256"] = "0" * 64
    cassette_file.write_text(json.dumps(cassette))
    run = run_and_parse("tasks/fix-off-by-one")
    run.result.assert_outcomes(errors=1)
    item = run.items()["fix-off-by-one[replay-r0]"]
    assert item["outcome"] == "error" and item["resolved"] is True  # the tests' verdict is kept beside it
    assert (
        item["reason"].startswith("judge: ")
        and "rubrics.code_quality.diff_sha256: recorded for another diff" in (item["reason"])
    )


def _judged_run(run_and_parse: Callable[..., Any], server: ScriptedResponsesServer, *args: str) -> Any:
    url = server.url_for("j")
    return run_and_parse("tasks", "--oneshot-agent=oracle", f"--oneshot-judge-base-url={url}", *args)


def test_an_unscored_rubric_is_judged_cached_and_the_key_is_written_nowhere(
    pytester: pytest.Pytester,
    make_task: Callable[..., Path],
    run_and_parse: Callable[..., Any],
    judge_server: ScriptedResponsesServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")  # correctness: tests (0.7); quality: nothing (0.3)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    judge_server.add_script("j", [http_error(503), answer(verdict_json(0.5, rubric_id="quality"))])
    first = _judged_run(run_and_parse, judge_server, "--oneshot-judge-model=judge-m")
    first.result.assert_outcomes(passed=1)
    item = first.items()["fix-add[oracle-r0]"]
    quality = {rubric["id"]: rubric for rubric in item["rubrics"]}["quality"]
    assert (quality["score"], quality["scored_by"], item["score"]) == (0.5, "judge", pytest.approx(0.85))
    requests = judge_server.requests("j")
    assert len(requests) == 2  # a 503, retried
    assert requests[-1].headers["authorization"] == f"Bearer {CANARY}"  # the key was used ...
    prompt = requests[-1].body["input"][1]["content"]
    assert (
        "-    return a - b\n+    return a + b" in prompt
        and "tests/test_calc.py::test_add (fail_to_pass): PASSED" in prompt
    )

    again = _judged_run(run_and_parse, judge_server, "--oneshot-judge-model=judge-m", "--oneshot-min-score=0.9")
    assert len(judge_server.requests("j")) == 2  # ... a rerun costs nothing
    again.result.assert_outcomes(failed=1)  # a min score counts the judged rubric
    assert "resolved, but score 0.85 < min score 0.9" in again.items()["fix-add[oracle-r0]"]["reason"]

    echo = HttpError(status=401, body={"error": {"code": "invalid_api_key", "message": f"Incorrect API key: {CANARY}"}})
    judge_server.add_script("j", [Turn(http_error=echo)])  # an error quoting the key does not leak it either
    failing = _judged_run(run_and_parse, judge_server, "--oneshot-judge-model=judge-m2")
    failing.result.assert_outcomes(errors=1)
    assert "Incorrect API key: ***" in failing.items()["fix-add[oracle-r0]"]["reason"]
    # ... written nowhere: run dirs, reports, JUnit, logs, the cache
    roots = [pytester.path, Path(os.environ["ONESHOT_CACHE_DIR"])]
    leaked = [
        path for root in roots for path in root.rglob("*") if path.is_file() and CANARY.encode() in path.read_bytes()
    ]
    assert not leaked, leaked
    outputs = [run.result.stdout.str() + run.result.stderr.str() for run in (first, again, failing)]
    assert not [output for output in outputs if CANARY in output]


@pytest.mark.parametrize(
    ("turns", "problem"),
    [
        ([answer(verdict_json(1.5, rubric_id="quality"))], "score is out of range [0, 1] (got 1.5)"),
        ([answer("I'd say 7/10")], "the answer is not JSON"),
        ([http_error(400, "invalid_request_error")], "answered HTTP 400"),
        ([Turn(hang=True)], "no answer from"),
    ],
    ids=["out-of-range", "unparsable", "http-error", "timeout"],
)
def test_a_judge_failure_is_an_item_error_with_the_reason_never_a_score(
    pytester: pytest.Pytester,
    make_task: Callable[..., Path],
    run_and_parse: Callable[..., Any],
    judge_server: ScriptedResponsesServer,
    turns: list[Turn],
    problem: str,
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    judge_server.add_script("j", turns)
    run = _judged_run(run_and_parse, judge_server, "--oneshot-judge-model=judge-m", "--oneshot-judge-timeout=1")
    run.result.assert_outcomes(errors=1)
    item = run.items()["fix-add[oracle-r0]"]
    assert item["outcome"] == "error" and item["reason"].startswith("judge: rubric quality: ")
    assert problem in item["reason"]
    assert {rubric["id"]: rubric["score"] for rubric in item["rubrics"]} == {"correctness": 1.0, "quality": None}
    run.result.stdout.fnmatch_lines([f"*judge: rubric quality: *{problem[:20]}*"])


def test_a_conftest_judge_is_used_and_test_scored_rubrics_are_never_sent(
    pytester: pytest.Pytester, make_task: Callable[..., Path], run_and_parse: Callable[..., Any]
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    pytester.makeconftest(
        """
from pytest_oneshot.judge import JudgeVerdict

asked = []


class CountingJudge:
    name = "counting"

    def __init__(self, options):
        pass

    def judge(self, request):
        asked.append(request.rubric.id)
        assert asked == ["quality"], asked
        return JudgeVerdict(0.25, "one rubric asked", ("+    return a + b",), model=request.model)


def pytest_oneshot_register(registries):
    registries.judge.register("counting", CountingJudge)
"""
    )
    run = run_and_parse("tasks", "--oneshot-agent=oracle", "--oneshot-judge=counting", "--oneshot-judge-model=any")
    run.result.assert_outcomes(passed=1)
    rubrics = {rubric["id"]: rubric for rubric in run.items()["fix-add[oracle-r0]"]["rubrics"]}
    assert (rubrics["quality"]["score"], rubrics["correctness"]["scored_by"]) == (0.25, "tests")


def test_an_unknown_judge_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--oneshot-judge=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--oneshot-judge: unknown judge 'nosuch' (known: *openai*"])
