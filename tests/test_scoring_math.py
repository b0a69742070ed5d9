"""The scoring math, as pure functions: pass@k, the Wilson interval, rubric and total scores, how
recorded per-test results become graded statuses, the run's cross-check, and the trial's verdict.

Each case states the rule it holds: a change to any of them in the verdict path fails a test here
(``scripts/mutation-test`` checks that for every single-point change it can make).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import pytest

from pytest_oneshot.agent import AgentResult, AgentStatus
from pytest_oneshot.report.session import aggregate
from pytest_oneshot.report.stats import pass_at_k, wilson_interval
from pytest_oneshot.scoring.rubric import RubricScore, score_rubrics, total_score
from pytest_oneshot.scoring.tests import (
    GradedTest,
    TestKind,
    TestRun,
    TestStatus,
    _cross_check,
    _status_of,
    graded_files,
    graded_tests,
    selection,
)
from pytest_oneshot.task import TaskSpec
from pytest_oneshot.trial import AgentSummary, TrialResult, _verdict

F2P = ["t/test_a.py::test_1", "t/test_a.py::test_2", "t/test_a.py::test_3", "t/test_a.py::test_4"]
P2P = ["t/test_b.py::test_keep"]


# -- pass@k and the Wilson interval ------------------------------------------------------------


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> Fraction:
    """The definition: the share of the k-subsets of n attempts (c of them passing) holding a pass."""
    attempts = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(attempts, k))
    return Fraction(sum(1 for subset in subsets if any(subset)), len(subsets))


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_is_the_unbiased_estimator(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = _pass_at_k_by_enumeration(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12), (n, c, k)


def test_pass_at_k_edges() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the pass rate
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # fewer failures than k: every draw of k holds a pass
    assert pass_at_k(10, 7, 3) == pytest.approx(1 - 1 / 120)  # exactly one all-failing draw of C(10,3)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", method 3 (Wilson).
@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(0, 10, 0.0, 0.2775), (1, 10, 0.0179, 0.4042), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
     (0, 1, 0.0, 0.7935), (1, 1, 0.2065, 1.0), (81, 263, 0.2553, 0.3662)],
)  # fmt: skip
def test_wilson_interval_matches_published_values(successes: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize(("successes", "n"), [(1, 10), (3, 4), (5, 10), (9, 10), (2, 3), (40, 41)])
def test_wilson_bounds_solve_the_score_equation(successes: int, n: int) -> None:
    """Each bound p satisfies (p_hat - p)^2 = z^2 p (1 - p) / n, with p_hat between them."""
    z, p_hat = 1.96, successes / n
    low, high = wilson_interval(successes, n)
    assert low < p_hat < high
    for p in (low, high):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)
    wider_low, wider_high = wilson_interval(successes, n, z=2.58)
    assert wider_low < low and high < wider_high


def test_wilson_interval_of_nothing_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _report_item(outcome: str, score: float | None, task: str = "t", model: str | None = "m") -> dict[str, Any]:
    agent = {"name": "codex"}
    return {"task_name": task, "model": model, "agent": agent, "outcome": outcome, "score": score,
            "tokens": None, "cost_usd": None}  # fmt: skip


def test_aggregate_counts_passes_per_task_and_model() -> None:
    items = [_report_item("passed", 1.0), _report_item("failed", 0.5), _report_item("error", None),
             _report_item("passed", 1.0), _report_item("passed", None, model=None)]  # fmt: skip
    (by_agent, row) = aggregate(items)
    assert by_agent["model"] == "codex" and by_agent["attempts"] == 1
    assert (row["attempts"], row["passed"], row["errors"]) == (4, 2, 1)
    assert row["pass@1"] == 0.5 and row["pass@4"] == pytest.approx(pass_at_k(4, 2, 4))
    assert row["pass_rate_ci95"] == [round(bound, 4) for bound in wilson_interval(2, 4)]
    assert row["mean_score"] == pytest.approx(2.5 / 3)  # unscored attempts are left out, not zeros
    assert row["outcomes"] == ["error", "failed", "passed"]


# -- graded tests and statuses ------------------------------------------------------------------


def _spec(
    f2p: list[str] | None = None,
    p2p: list[str] | None = None,
    rubrics: list[dict[str, Any]] | None = None,
    scripts: list[dict[str, str]] | None = None,
    rubric_id: str | None = "correctness",
) -> TaskSpec:
    if rubrics is None:
        rubrics = [{"id": "correctness", "weight": 0.7}, {"id": "quality", "weight": 0.3}]
    return TaskSpec.model_validate(
        {
            "task_id": "t",
            "repo": {"git_url": "x", "start_commit_sha": "0" * 40},
            "evaluation": {"rubrics": rubrics, "test_scripts": scripts or []},
            "tests": {"fail_to_pass": F2P if f2p is None else f2p, "pass_to_pass": P2P if p2p is None else p2p,
                      "rubric_id": rubric_id},
        }
    )  # fmt: skip


def _run(statuses: dict[str, TestStatus], spec: TaskSpec | None = None, problem: str | None = None) -> TestRun:
    """A run of ``spec``'s graded tests: ``statuses`` where given, else passed."""
    kinds: dict[str, TestKind] = {test.id: test.kind for test in graded_tests(spec or _spec())}
    full: dict[str, TestStatus] = {test_id: statuses.get(test_id, "passed") for test_id in kinds}
    return TestRun(statuses=full, kinds=kinds, exit_code=0 if problem is None else 1, problem=problem)


def test_graded_tests_add_scripts_whose_file_is_not_already_graded() -> None:
    scripts = [
        {"path": "t/test_a.py", "rubric_id": "quality", "content": ""},  # its file is graded by node id
        {"path": "t/test_doc.py", "rubric_id": "quality", "content": ""},
    ]
    graded = graded_tests(_spec(scripts=scripts))
    assert graded == [
        *(GradedTest(test_id, "fail_to_pass", "correctness") for test_id in F2P),
        GradedTest(P2P[0], "pass_to_pass", "correctness"),
        GradedTest("t/test_doc.py", "fail_to_pass", "quality"),
    ]
    assert graded_files(_spec(scripts=scripts)) == ["t/test_a.py", "t/test_b.py", "t/test_doc.py"]


def test_selection_runs_a_whole_file_once_and_node_ids_once() -> None:
    graded = [GradedTest("a.py::x", "fail_to_pass", None), GradedTest("a.py", "fail_to_pass", None),
              GradedTest("b.py::y", "pass_to_pass", None), GradedTest("b.py::y", "fail_to_pass", None),
              GradedTest("ab.py::z", "fail_to_pass", None)]  # fmt: skip
    assert selection(graded) == ["a.py", "b.py::y", "ab.py::z"]


@pytest.mark.parametrize(
    ("test_id", "expected"),
    [
        ("f.py::test_ok", "passed"),
        ("f.py::test_skip", "skipped"),
        ("f.py::test_fail", "failed"),
        ("f.py::test_err", "error"),
        ("f.py::test_gone", "missing"),  # never reported: deleted, not collected, crashed run
        ("f.py::test_odd", "missing"),  # a status the launcher does not write
        ("f.py", "missing"),  # a whole file is only as good as each of its tests
    ],
)
def test_status_of_a_node_id_is_its_recorded_status(test_id: str, expected: TestStatus) -> None:
    recorded = {"f.py::test_ok": "passed", "f.py::test_skip": "skipped", "f.py::test_fail": "failed",
                "f.py::test_err": "error", "f.py::test_odd": "xpassed"}  # fmt: skip
    assert _status_of(test_id, recorded) == expected


@pytest.mark.parametrize(
    ("in_file", "expected"),
    [
        (["passed", "passed"], "passed"),
        (["passed", "skipped"], "skipped"),
        (["skipped", "failed", "passed"], "failed"),
        (["error", "passed"], "error"),
        (["failed", "error"], "error"),
        (["passed", "xpassed"], "missing"),
        ([], "missing"),
    ],
)
def test_status_of_a_whole_file_is_its_worst_test(in_file: list[str], expected: TestStatus) -> None:
    recorded = {f"t/test_f.py::test_{n}": status for n, status in enumerate(in_file)}
    recorded |= {"t/test_f.pyc::test_x": "failed", "t/other.py::test_y": "error", "t/test_f.py.bak": "failed"}
    assert _status_of("t/test_f.py", recorded) == expected


def test_status_of_a_whole_file_includes_class_and_parametrized_ids() -> None:
    recorded = {"t/f.py::TestA::test_x[1::2]": "passed", "t/f.py::TestA::test_x[3]": "failed"}
    assert _status_of("t/f.py", recorded) == "failed"
    assert _status_of("t/f.py::TestA::test_x[1::2]", recorded) == "passed"


# -- resolved ------------------------------------------------------------------------------------


def test_resolved_when_every_graded_test_passes() -> None:
    run = _run({})
    assert run.resolved
    assert (run.count("fail_to_pass"), run.total("fail_to_pass")) == (4, 4)
    assert (run.count("pass_to_pass"), run.total("pass_to_pass")) == (1, 1)


@pytest.mark.parametrize("status", ["skipped", "missing", "failed", "error"])
@pytest.mark.parametrize("test_id", [F2P[0], F2P[3], P2P[0]])
def test_not_resolved_when_any_graded_test_did_not_pass(test_id: str, status: TestStatus) -> None:
    run = _run({test_id: status})
    assert not run.resolved
    assert run.failing() == f"{test_id} {status}"


def test_not_resolved_without_fail_to_pass_tests() -> None:
    """Only pass-to-pass tests, all passing: doing nothing would pass, so nothing is resolved."""
    assert not _run({}, _spec(f2p=[])).resolved
    assert not TestRun(statuses={}, kinds={}, exit_code=0).resolved


def test_not_resolved_when_the_run_cannot_be_trusted() -> None:
    run = _run({}, problem="the test command exited 0 but its results list failures")
    assert not run.resolved
    assert not any(run.passed(test_id) for test_id in run.statuses)


def test_counts_and_failing_list() -> None:
    ids = [f"t/test_a.py::test_{n}" for n in range(13)]
    statuses: dict[str, TestStatus] = {test_id: "failed" for test_id in ids[:12]}
    run = _run({**statuses, P2P[0]: "skipped"}, _spec(f2p=ids))
    assert (run.count("fail_to_pass"), run.count("fail_to_pass", "failed")) == (1, 12)
    assert (run.count("pass_to_pass"), run.count("pass_to_pass", "skipped"), run.total("pass_to_pass")) == (0, 1, 1)
    assert run.failing() == ", ".join(f"{test_id} failed" for test_id in ids[:10]) + " and 3 more"
    assert run.failing(limit=13).endswith(f"{ids[11]} failed, {P2P[0]} skipped")
    assert "more" not in run.failing(limit=13)
    assert run.passed(ids[12]) and not run.passed(ids[0]) and not run.passed("t/unknown.py::x")


# -- the run's cross-check -----------------------------------------------------------------------

_PASSED = {"f.py::a": "passed", "f.py::s": "skipped"}
_FAILED = {"f.py::a": "passed", "f.py::b": "failed"}
_ERRORED = {"f.py::a": "passed", "f.py::b": "error"}


@pytest.mark.parametrize(
    ("exit_code", "recorded_exit", "results", "problem"),
    [
        (0, 0, _PASSED, None),
        (1, 1, _FAILED, None),
        (1, 1, _ERRORED, None),
        (0, 0, _FAILED, "the test command exited 0 but its results list failures"),
        (0, 0, _ERRORED, "the test command exited 0 but its results list failures"),
        (1, 1, _PASSED, "the test command exited 1 but its results list no failure"),
        (0, 1, _PASSED, "pytest's recorded exit status 1 is not the command's exit code 0"),
        (1, 0, _FAILED, "pytest's recorded exit status 0 is not the command's exit code 1"),
        (0, None, _PASSED, "pytest's recorded exit status None is not the command's exit code 0"),
        (5, 5, {}, "the test command ran no tests (exit code 5)"),
        (5, 5, _PASSED, "the test command ran no tests (exit code 5)"),
        (0, 0, {}, "the test command ran no tests (exit code 0)"),
        (2, 2, _FAILED, "the test command did not complete normally (exit code 2)"),
        (3, 3, _PASSED, "the test command did not complete normally (exit code 3)"),
        (4, 4, _PASSED, "the test command did not complete normally (exit code 4)"),
        (-9, -9, _PASSED, "the test command did not complete normally (exit code -9)"),
    ],
)
def test_cross_check(exit_code: int, recorded_exit: int | None, results: dict[str, str], problem: str | None) -> None:
    recorded: dict[str, object] = {} if recorded_exit is None else {"exitstatus": recorded_exit}
    assert _cross_check(exit_code, recorded, results) == problem


# -- rubric and total scores ---------------------------------------------------------------------


def _scores(run: TestRun, spec: TaskSpec | None = None) -> dict[str, RubricScore]:
    return {rubric.id: rubric for rubric in score_rubrics(spec or _spec(), run)}


def test_a_rubric_scores_its_fail_to_pass_pass_rate() -> None:
    scores = _scores(_run({F2P[1]: "failed", F2P[2]: "skipped", F2P[3]: "missing"}))
    correctness = scores["correctness"]
    assert correctness.score == 0.25
    assert (correctness.test_count, correctness.tests_passed, correctness.scored_by) == (5, 2, "tests")
    assert (correctness.criterion, correctness.weight) == ("", 0.7)
    assert _scores(_run({F2P[0]: "failed"}))["correctness"].score == 0.75
    assert _scores(_run({}))["correctness"].score == 1.0


@pytest.mark.parametrize("status", ["failed", "error", "skipped", "missing"])
def test_a_regressed_pass_to_pass_zeroes_its_rubric(status: TestStatus) -> None:
    correctness = _scores(_run({P2P[0]: status}))["correctness"]
    assert correctness.score == 0.0
    assert (correctness.test_count, correctness.tests_passed, correctness.scored_by) == (5, 4, "tests")


def test_an_untrusted_run_scores_zero_not_unscored() -> None:
    correctness = _scores(_run({}, problem="the test command ran no tests (exit code 5)"))["correctness"]
    assert (correctness.score, correctness.tests_passed, correctness.scored_by) == (0.0, 0, "tests")


def test_rubrics_no_test_scores_are_unscored() -> None:
    """A rubric without tests, or with pass-to-pass tests only, is unscored: never 0, never free points."""
    spec = _spec(f2p=[], rubrics=[{"id": "correctness"}, {"id": "quality"}])
    scores = _scores(_run({}, spec), spec)
    for rubric in scores.values():
        assert (rubric.score, rubric.scored_by) == (None, None)
    assert (scores["correctness"].test_count, scores["quality"].test_count) == (1, 0)
    assert total_score(list(scores.values())) is None


def test_each_rubric_scores_only_its_own_tests() -> None:
    scripts = [{"path": "t/test_doc.py", "rubric_id": "quality", "content": ""}]
    spec = _spec(scripts=scripts)
    scores = _scores(_run({"t/test_doc.py": "failed"}, spec), spec)
    assert (scores["correctness"].score, scores["quality"].score) == (1.0, 0.0)
    assert (scores["quality"].test_count, scores["quality"].tests_passed) == (1, 0)
    unowned = _spec(rubric_id=None, scripts=scripts)
    scores = _scores(_run({}, unowned), unowned)
    assert (scores["correctness"].score, scores["quality"].score) == (None, 1.0)


def _rubric(score: float | None, weight: float) -> RubricScore:
    return RubricScore(id=f"r{weight}", criterion="", weight=weight, score=score)


def test_total_is_the_weighted_mean_of_scored_rubrics() -> None:
    assert total_score([_rubric(1.0, 0.7), _rubric(0.0, 0.3)]) == pytest.approx(0.7)
    assert total_score([_rubric(0.5, 3.0), _rubric(1.0, 1.0)]) == pytest.approx(0.625)
    assert total_score([_rubric(0.5, 2.0), _rubric(None, 5.0)]) == 0.5  # unscored: left out, not a zero
    assert total_score([_rubric(0.0, 1.0)]) == 0.0
    assert total_score([_rubric(None, 1.0)]) is None
    assert total_score([]) is None


def test_total_is_a_mean_not_a_sum() -> None:
    rubrics = [_rubric(0.8, 2.0), _rubric(0.6, 2.0), _rubric(0.4, 4.0)]
    assert total_score(rubrics) == pytest.approx(0.55)
    assert total_score([_rubric(1.0, 0.5), _rubric(1.0, 0.25)]) == pytest.approx(1.0)


# -- the verdict ---------------------------------------------------------------------------------


def _verdict_of(
    run: TestRun, score: float | None = 1.0, min_score: float | None = None, agent: AgentStatus = "completed",
    message: str = "",
) -> tuple[str, str]:  # fmt: skip
    result = TrialResult(task_id="t", task_name="t", item_id="t[x]", run_id="r", model=None, rollout=0,
                         agent=AgentSummary(name="x"), tests=run, score=score, resolved=run.resolved)  # fmt: skip
    return _verdict(result, AgentResult(agent, message=message), min_score)


def test_a_resolved_run_passes_with_a_summary() -> None:
    assert _verdict_of(_run({})) == ("passed", "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed")


@pytest.mark.parametrize("status", ["timeout", "agent_error", "token_limit"])
def test_an_agent_that_did_not_complete_fails_with_its_own_outcome(status: AgentStatus) -> None:
    summary = "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed"
    assert _verdict_of(_run({}), agent=status, message="it stopped") == (status, f"it stopped; {summary}")
    assert _verdict_of(_run({}), agent=status) == (status, f"{status}; {summary}")


def test_an_untrusted_run_fails() -> None:
    run = _run({}, problem="tests timed out after 60s")
    assert _verdict_of(run) == ("failed", "the test run cannot be trusted: tests timed out after 60s")


def test_an_unresolved_run_fails_naming_what_failed() -> None:
    outcome, reason = _verdict_of(_run({F2P[2]: "skipped", P2P[0]: "failed"}), score=0.0)
    assert outcome == "failed"
    assert reason == (
        f"not resolved: fail_to_pass 3/4 passed, pass_to_pass 0/1 passed; {F2P[2]} skipped, {P2P[0]} failed"
    )


@pytest.mark.parametrize(
    ("score", "min_score", "outcome", "reason"),
    [
        (0.85, 0.9, "failed", "resolved, but score 0.85 < min score 0.9"),
        (0.0, 0.01, "failed", "resolved, but score 0.00 < min score 0.01"),
        (None, 0.5, "failed", "resolved, but no rubric is scored to compare with min score 0.5"),
        (0.9, 0.9, "passed", "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed"),
        (0.95, 0.9, "passed", "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed"),
        (0.0, 0.0, "passed", "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed"),
        (None, None, "passed", "fail_to_pass 4/4 passed, pass_to_pass 1/1 passed"),
    ],
)
def test_min_score(score: float | None, min_score: float | None, outcome: str, reason: str) -> None:
    assert _verdict_of(_run({}), score=score, min_score=min_score) == (outcome, reason)
