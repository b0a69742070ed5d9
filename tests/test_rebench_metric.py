"""Research-bench tasks: the repo fetched from a file:// URL at a commit, install commands run, a metric
measured before and after the agent's change in fresh sandboxes, the delta as the score -- and an agent
that forges the metric's output file (and guts the metric script) gaining nothing."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from judge_answers import answer, verdict_json

from pytest_oneshot.errors import TaskFormatError
from pytest_oneshot.model.scripted import ScriptedResponsesServer
from pytest_oneshot.scoring.metric import parse_value
from pytest_oneshot.task import load_task
from pytest_oneshot.task_tests import MetricSpec

SCORE_PY = """\
import json, os, subprocess, sys
data = json.load(open("bench/data.json"))
right = 0
for x, label in data:  # the repo's code runs in a child process: it cannot write our output
    out = subprocess.run([sys.executable, "-c", f"import model; print(model.predict({x}))"],
                         capture_output=True, text=True).stdout.strip()
    right += out == str(label)
os.makedirs("results", exist_ok=True)
json.dump({"accuracy": right / len(data), "installed": open("installed.txt").read().strip()},
          open("results/metric.json", "w"))
"""


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def rebench_task(tmp_path: Path, pytester: pytest.Pytester, request: pytest.FixtureRequest) -> Path:
    """``predict`` always says 0 (accuracy 0.5 on x % 2); the metric writes results/metric.json.

    Parametrized indirectly, the project is in that ``repo.subdir``."""
    subdir: str = getattr(request, "param", "")
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    files = {
        "model.py": "def predict(x):\n    return 0\n",
        "bench/score.py": SCORE_PY,
        "bench/data.json": json.dumps([[x, x % 2] for x in range(10)]),
    }
    for rel, text in files.items():
        (upstream / subdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (upstream / subdir / rel).write_text(text)
    _git(upstream, "init", "-q", "-b", "main")
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-qm", "start")
    start = _git(upstream, "rev-parse", "HEAD")
    (upstream / subdir / "model.py").write_text("def predict(x):\n    return 1\n")  # a later commit, never seen
    _git(upstream, "commit", "-qam", "later")
    task = pytester.path / "tasks" / "improve-model"
    task.mkdir(parents=True)
    meta: dict[str, Any] = {
        "task_id": "improve-model",
        "repo": {"git_url": upstream.as_uri(), "branch": "main", "start_commit_sha": start, "subdir": subdir},
        "lm": {"instructions": "Make model.predict more accurate on bench/data.json."},
        "environment": {"setup": ["echo done > installed.txt"]},
        "metric": {
            "command": "python3 bench/score.py",
            "output": "results/metric.json",
            "json_key": "accuracy",
            "files": ["bench"],
        },
        "evaluation": {"rubrics": [{"id": "quality", "criterion": "clean code"}]},
        "limits": {"agent_timeout_sec": 60},
    }
    (task / "tb_meta.json").write_text(json.dumps(meta))
    return task


def _run(run_and_parse: Callable[..., Any], agent_cmd: str, *args: str) -> dict[str, Any]:
    run = run_and_parse("tasks", "--oneshot-agent=command", f"--oneshot-agent-cmd={agent_cmd}", *args)
    (item,) = run.items().values()
    item["props"] = run.properties("improve-model")
    item["stdout"] = run.result.stdout.str()
    return item


def test_the_score_is_the_metric_delta_measured_in_fresh_sandboxes_with_the_judge_on_top(
    rebench_task: Path, run_and_parse: Callable[..., Any]
) -> None:
    fix = "printf 'def predict(x):\\n    return x %% 2\\n' > model.py && git log --all --oneline | wc -l > seen.txt"
    with ScriptedResponsesServer() as judge:
        judge.add_script("j", [answer(verdict_json(0.75, rubric_id="quality"))])
        item = _run(
            run_and_parse, fix, "--oneshot-judge-model=judge-m", f"--oneshot-judge-base-url={judge.url_for('j')}"
        )
        prompt = json.dumps(judge.requests("j")[0].body)
    assert item["outcome"] == "passed", item["reason"]
    metric = item["metric"]
    assert (metric["before"], metric["after"], metric["delta"], metric["improved"]) == (0.5, 1.0, 0.5, True)
    assert (item["props"]["oneshot.metric.delta"], item["props"]["oneshot.metric.before"]) == ("0.5", "0.5")
    assert (item["rubrics"][0]["score"], item["rubrics"][0]["scored_by"], item["score"]) == (0.75, "judge", 0.75)
    assert "return x % 2" in prompt  # the judge saw the diff
    run_dir = Path(item["run_dir"])
    saved = json.loads((run_dir / "evaluation_results.json").read_text())
    assert saved["reward_types"][0]["type"] == "baseline_delta" and saved["reward_types"][0]["value"] == 0.5
    assert "+    return x % 2" in (run_dir / "diff.patch").read_text()
    # The agent's repo held the start commit and the harness's baseline commit, not the later one.
    assert "+2\n" in (run_dir / "diff.patch").read_text().split("seen.txt", 1)[1]


@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_an_agent_forging_the_metric_output_gains_nothing(
    rebench_task: Path, run_and_parse: Callable[..., Any], sandbox: str, request: pytest.FixtureRequest
) -> None:
    if sandbox == "docker":
        request.getfixturevalue("engine")  # started, or skipped with the reason
    forge = (
        "mkdir -p results && echo '{\"accuracy\": 1.0}' > results/metric.json && "
        "echo 'pass' > bench/score.py && echo '[]' > bench/data.json"
    )
    item = _run(run_and_parse, forge, f"--oneshot-sandbox={sandbox}")
    assert item["outcome"] == "failed"
    metric = item["metric"]
    assert (metric["before"], metric["after"], metric["delta"], metric["improved"]) == (0.5, 0.5, 0.0, False)
    assert set(item["reset_to_start"]) == {"results/metric.json", "bench/score.py", "bench/data.json"}
    assert "not resolved" in item["reason"]


MODEL_REPLACING_THE_WORKDIR = """\
import os
if os.path.isfile("bench/score.py") and not os.path.isdir("../proj_old"):  # imported under the metric
    workdir = os.getcwd()
    os.rename(workdir, workdir + "_old")  # score.py keeps its cwd, and writes its results in there
    os.makedirs(workdir + "/results")
    with open(workdir + "/results/metric.json", "w") as out:
        out.write('{"accuracy": 1.0}')  # where the harness reads, by path, after the command


def predict(x):
    return 0
"""


@pytest.mark.parametrize("rebench_task", ["proj"], indirect=True)
def test_an_agent_replacing_the_metrics_workdir_gains_nothing(
    rebench_task: Path, run_and_parse: Callable[..., Any]
) -> None:
    item = _run(run_and_parse, f"printf %s {shlex.quote(MODEL_REPLACING_THE_WORKDIR)} > model.py")
    assert item["outcome"] == "failed"
    assert item["metric"]["after"] is None and item["metric"]["before"] == 0.5
    assert "working directory was replaced" in item["reason"], item["reason"]


def test_the_files_a_metric_command_names_are_kept_as_at_the_start(
    rebench_task: Path, run_and_parse: Callable[..., Any]
) -> None:
    meta_file = rebench_task / "tb_meta.json"
    meta = json.loads(meta_file.read_text())
    meta["metric"]["files"] = ["bench/data.json"]  # the command's own script is not declared
    meta_file.write_text(json.dumps(meta))
    forged = 'import json, os\nos.makedirs("results")\njson.dump({"accuracy": 1.0}, open("results/metric.json", "w"))\n'
    forge = f"printf %s {shlex.quote(forged)} > bench/score.py"
    item = _run(run_and_parse, forge)
    assert item["outcome"] == "failed"
    assert item["metric"]["after"] == 0.5 and "bench/score.py" in item["reset_to_start"]


def test_a_metric_that_fails_at_the_start_commit_is_an_error_not_the_agents(
    rebench_task: Path, run_and_parse: Callable[..., Any]
) -> None:
    meta = json.loads((rebench_task / "tb_meta.json").read_text())
    meta["metric"]["json_key"] = "no_such_key"
    (rebench_task / "tb_meta.json").write_text(json.dumps(meta))
    item = _run(run_and_parse, "true")
    assert item["outcome"] == "error"
    assert "metric at the start commit: no metric value in results/metric.json: no key 'no_such_key'" in item["reason"]


@pytest.mark.parametrize(
    ("spec", "text", "value"),
    [
        ({}, "epoch 1\nloss 3\n0.25\n\n", 0.25),
        ({"pattern": r"acc=([0-9.]+)"}, "acc=0.1\nnoise\nacc=0.7 done\n", 0.7),
        ({"json_key": "a.b"}, 'log line\n{"a": {"b": 2}}\n', 2.0),
    ],
)
def test_metric_values_are_parsed_as_declared(spec: dict[str, str], text: str, value: float) -> None:
    assert parse_value(text, MetricSpec(command="x", **spec), from_file=False) == value


@pytest.mark.parametrize(
    ("spec", "text", "problem"),
    [
        ({}, "\n\n", "the output is empty"),
        ({}, "nan\n", "not a finite number"),
        ({"pattern": r"acc=([0-9.]+)"}, "nothing", "no match"),
        ({"json_key": "a"}, "[1]", "no key 'a'"),
    ],
)
def test_a_missing_metric_value_says_what_was_looked_for(spec: dict[str, str], text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_value(text, MetricSpec(command="x", **spec), from_file=True)


def test_a_metric_pattern_needs_one_group() -> None:
    with pytest.raises(ValueError, match="needs exactly one group"):
        MetricSpec(command="x", pattern="acc=[0-9]+")


def test_a_task_is_scored_by_its_metric_or_its_tests_not_both(rebench_task: Path) -> None:
    meta = json.loads((rebench_task / "tb_meta.json").read_text())
    meta["evaluation"]["test_scripts"] = [{"path": "t.py", "rubric_id": "quality", "content": ""}]
    (rebench_task / "tb_meta.json").write_text(json.dumps(meta))
    with pytest.raises(TaskFormatError, match=r"tb_meta.json: metric: a task is scored by its metric or by hidden"):
        load_task(rebench_task)
