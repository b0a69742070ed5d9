"""``oneshot regrade``: a finished run scored again from its recorded diffs, no agent run, nothing overwritten."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from judge_answers import answer, verdict_json

from pytest_oneshot.cli import main
from pytest_oneshot.model.scripted import ScriptedResponsesServer


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}


def test_regrade_rejudges_and_reruns_tests_without_touching_the_run(
    pytester: pytest.Pytester,
    make_task: Callable[..., Path],
    run_and_parse: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_task(pytester.path / "tasks" / "fix-add")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-regrade-test")
    with ScriptedResponsesServer() as server:
        url = server.add_script("first", [answer(verdict_json(0.5, rubric_id="quality"))])
        run = run_and_parse(
            "tasks", "--oneshot-agent=oracle", "--oneshot-judge-model=judge-m", f"--oneshot-judge-base-url={url}"
        )
        run.result.assert_outcomes(passed=1)
        run_dir = pytester.path / "runs" / run.report["run_id"]
        recorded = _snapshot(run_dir)
        monkeypatch.chdir(pytester.path)

        url = server.add_script("second", [answer(verdict_json(0.9, rubric_id="quality"))])
        assert main(["regrade", str(run_dir), "--judge-model=judge-m2", f"--judge-base-url={url}"]) == 0
        printed = capsys.readouterr().out
        assert "fix-add[oracle-r0]" in printed and "passed -> passed" in printed and "0.85 -> 0.97" in printed
        (first,) = (run_dir / "regrades").iterdir()
        report = json.loads((first / "regrade.json").read_text())
        (row,) = report["items"]
        assert row["rubrics"] == {"correctness": [1.0, 1.0], "quality": [0.5, 0.9]}
        item = json.loads((first / "fix-add__oracle-r0" / "evaluation_results.json").read_text())
        assert item["rubrics"][1]["judge_model"] == "judge-m2" and item["score"] == pytest.approx(0.97)
        assert not (first / "fix-add__oracle-r0" / "rerun").exists()  # nothing ran: the recorded results were read
        assert len(server.requests("second")) == 1

        # new rubrics, the tests run again on the recorded diff; a judge error is the item's error
        rubrics = pytester.path / "rubrics.json"
        rubrics.write_text(json.dumps([{"id": "correctness", "weight": 1}, {"id": "style", "weight": 1}]))
        server.add_script("second", [answer(verdict_json(2.0, rubric_id="style"))])
        argv = ["regrade", str(run_dir), "--judge-model=judge-m3", f"--judge-base-url={url}", f"--rubrics={rubrics}"]
        assert main([*argv, "--rerun-tests"]) == 0
        assert "passed -> error" in capsys.readouterr().out
        (second,) = set((run_dir / "regrades").iterdir()) - {first}
        rerun = second / "fix-add__oracle-r0" / "rerun"
        assert (rerun / "tests.log").is_file() and (rerun / "diff.patch").read_bytes() == recorded[
            "fix-add__oracle-r0/diff.patch"
        ]
        item = json.loads((second / "fix-add__oracle-r0" / "evaluation_results.json").read_text())
        assert item["outcome"] == "error" and "rubric style: score is out of range" in item["reason"]
        assert item["tests"]["statuses"] == {
            "tests/test_calc.py::test_add": "passed",
            "tests/test_calc.py::test_zero": "passed",
        }

    after = _snapshot(run_dir)
    assert {name: data for name, data in after.items() if not name.startswith("regrades/")} == recorded


def test_regrade_of_a_directory_that_is_no_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["regrade", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"oneshot: error: {tmp_path}: no item directories with evaluation_results.json (is it a run dir?)"
    )
