"""``oneshot regrade RUN_DIR``: score a finished run again without running any agent.

Each item's recorded ``diff.patch`` and hidden-test results are scored against the task's rubrics (or
``--rubrics FILE``), the rubrics no test scores judged by ``--judge-model`` (or replayed where recorded).
With ``--rerun-tests`` the recorded diff is applied in a fresh sandbox and the hidden tests run again,
through the same trial path as a run (a fresh scoring sandbox, the honesty rules). Nothing of the run is
overwritten: the new results go to ``RUN_DIR/regrades/<id>/`` with ``regrade.json`` saying what changed,
and a before -> after table is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oneshot_shared.paths import cache_dir
from pytest_oneshot.agent import AgentRequest, AgentResult
from pytest_oneshot.errors import OneshotError, TaskFormatError
from pytest_oneshot.files import write_atomic
from pytest_oneshot.judge import Judge, default_judge_registry
from pytest_oneshot.model.replay import ReplayService, judge_cassette, recorded_judge_model
from pytest_oneshot.report.rundir import evaluation_results, render_markdown, write_judge_file
from pytest_oneshot.result import TrialResult
from pytest_oneshot.sandbox import Network, Sandbox, default_sandbox_registry
from pytest_oneshot.scoring.judging import judge_rubrics
from pytest_oneshot.scoring.rubric import RubricScore, score_rubrics, total_score
from pytest_oneshot.scoring.tests import TestRun
from pytest_oneshot.task import Evaluation, Task, TaskSpec, load_task
from pytest_oneshot.trial import TrialConfig, _verdict, run_trial

__all__ = ["add_commands", "regrade"]


class RecordedPatch:
    """An "agent" that applies a recorded ``diff.patch``: how ``--rerun-tests`` recreates the change."""

    name = "recorded-patch"
    network: Network = "none"
    uses_model = False

    def __init__(self, patch: bytes) -> None:
        self.patch = patch

    def mounts(self) -> Mapping[Path, str]:
        return {}

    def run(self, sandbox: Sandbox, request: AgentRequest) -> AgentResult:
        if not self.patch:
            return AgentResult("completed", exit_code=0)
        applied = sandbox.exec(["git", "apply", "--binary", "--whitespace=nowarn", "-"], stdin=self.patch, timeout=120)
        return AgentResult("completed" if applied.ok else "agent_error", applied.text()[-2000:], applied.returncode)


def _find_task(result: TrialResult, roots: list[Path]) -> Task:
    for root in roots:
        for candidate in (root / result.task_name, root):
            if (candidate / "tb_meta.json").is_file():
                task = load_task(candidate)
                if task.spec.task_id == result.task_id:
                    return task
        for meta in sorted(root.glob("*/tb_meta.json")):
            try:
                task = load_task(meta.parent)
            except TaskFormatError:
                continue
            if task.spec.task_id == result.task_id:
                return task
    raise OneshotError(f"task {result.task_id!r} not found under {', '.join(map(str, roots))} (use --tasks DIR)")


def _load_rubrics(path: Path) -> Evaluation:
    """``--rubrics FILE``: a JSON list of rubrics, or an object with ``rubrics`` (an ``evaluation`` block)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Evaluation.model_validate({"rubrics": raw} if isinstance(raw, list) else {"rubrics": raw["rubrics"]})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OneshotError(f"{path}: rubrics: {exc}") from None


def _rerun_tests(task: Task, spec: TaskSpec, result: TrialResult, patch: bytes, out: Path, sandbox: str) -> TestRun:
    config = TrialConfig(
        task=Task(spec, task.paths),
        agent=RecordedPatch(patch),
        sandbox_factory=default_sandbox_registry().get(sandbox),
        item_id=result.item_id,
        run_id=out.parent.name,
        run_dir=out / "rerun",
        cache_dir=cache_dir(),
    )
    rerun = run_trial(config)
    if rerun.tests is None:
        raise OneshotError(f"{result.item_id}: the hidden tests could not run again: {rerun.outcome}: {rerun.reason}")
    return rerun.tests


def regrade_item(
    item_dir: Path, out: Path, args: argparse.Namespace, judge: Judge | None, replay: ReplayService
) -> dict[str, Any]:
    """Score one recorded item again; write its new files under ``out``; return its before/after row."""
    data = json.loads((item_dir / "evaluation_results.json").read_text(encoding="utf-8"))
    before = TrialResult.model_validate(data)
    row: dict[str, Any] = {"item": before.item_id, "before": {"outcome": before.outcome, "score": before.score}}
    if before.tests is None:
        return {**row, "after": None, "skipped": f"never scored ({before.outcome}: {before.reason})"}
    task = _find_task(before, [Path(root) for root in args.tasks])
    evaluation = _load_rubrics(args.rubrics) if args.rubrics else task.spec.evaluation
    spec = task.spec.model_copy(
        update={"evaluation": task.spec.evaluation.model_copy(update={"rubrics": evaluation.rubrics})}
    )
    patch = (item_dir / "diff.patch").read_bytes() if (item_dir / "diff.patch").is_file() else b""
    tests = _rerun_tests(task, spec, before, patch, out, args.sandbox) if args.rerun_tests else before.tests
    after = before.model_copy(update={"tests": tests, "resolved": tests.resolved, "run_dir": str(out)})
    after.rubrics = score_rubrics(spec, tests)
    model = args.judge_model or recorded_judge_model(task, before.model)
    failure = None
    if judge is not None and model:
        try:
            after.rubrics = _judge(judge, model, task, spec, patch, tests, after, out, replay)
        except OneshotError as exc:  # a JudgeError, or a replayed answer that does not fit
            failure = f"judge: {exc}"
    after.score = total_score(after.rubrics)
    agent = AgentResult(before.agent.status or "completed", before.agent.message)  # type: ignore[arg-type]
    after.outcome, after.reason = ("error", failure) if failure else _verdict(after, agent, before.min_score)
    write_atomic(out / "evaluation_results.json", json.dumps(evaluation_results(after), indent=2).encode())
    write_atomic(out / "scoring_results.md", render_markdown(after).encode())
    rubric_changes = {
        score.id: [old.score if (old := {r.id: r for r in before.rubrics}.get(score.id)) else None, score.score]
        for score in after.rubrics
    }
    return {
        **row,
        "after": {"outcome": after.outcome, "score": after.score, "reason": after.reason},
        "rubrics": rubric_changes,
    }


def _judge(
    judge: Judge, model: str, task: Task, spec: TaskSpec, patch: bytes, tests: TestRun, after: TrialResult, out: Path,
    replay: ReplayService,
) -> list[RubricScore]:  # fmt: skip
    cassette = judge_cassette(task, model, after.model)
    digest = hashlib.sha256(patch).hexdigest()

    def endpoint(rubric_id: str) -> str | None:
        if cassette is None:
            return None
        return replay.judge_endpoint(cassette, rubric_id, digest, f"regrade-{out.parent.name}-{out.name}-{rubric_id}")

    records: dict[str, object] = {}
    try:
        return judge_rubrics(
            judge,
            model=model,
            task_id=spec.task_id,
            instructions=task.instructions,
            diff=patch,
            tests=tests,
            rubrics=spec.evaluation.rubrics,
            scores=after.rubrics,
            endpoint=endpoint,
            record=records.__setitem__,
        )
    finally:
        write_judge_file(out, {"judge": judge.name, "model": model, "rubrics": records})


def _fmt(score: float | None) -> str:
    return "unscored" if score is None else f"{score:.2f}"


def regrade(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    items = sorted(path.parent for path in run_dir.glob("*/evaluation_results.json"))
    if not items:
        raise OneshotError(f"{run_dir}: no item directories with evaluation_results.json (is it a run dir?)")
    regrade_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    target = run_dir / "regrades" / regrade_id
    options = {
        "base_url": args.judge_base_url,
        "api_key_env": args.judge_api_key_env,
        "concurrency": "4",
        "timeout": str(args.judge_timeout),
        "cache_dir": str(cache_dir()),
    }
    judge = default_judge_registry().get(args.judge)(options)
    replay = ReplayService()
    rows = []
    try:
        for item_dir in items:
            rows.append(regrade_item(item_dir, target / item_dir.name, args, judge, replay))
    finally:
        replay.close()
    settings = {
        "judge": args.judge,
        "judge_model": args.judge_model,
        "rubrics": str(args.rubrics) if args.rubrics else None,
        "rerun_tests": args.rerun_tests,
    }
    document = {"run_dir": str(run_dir), "regrade_id": regrade_id, "settings": settings, "items": rows}
    write_atomic(target / "regrade.json", json.dumps(document, indent=2).encode())
    print(f"{'item':<40} {'outcome':<22} score")
    for row in rows:
        before, after = row["before"], row["after"]
        if after is None:
            print(f"{row['item']:<40} {before['outcome']:<22} skipped: {row['skipped']}")
            continue
        outcome = f"{before['outcome']} -> {after['outcome']}"
        print(f"{row['item']:<40} {outcome:<22} {_fmt(before['score'])} -> {_fmt(after['score'])}")
    print(f"regrade: {target / 'regrade.json'}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "regrade",
        help="score a finished run again (no agent runs); results go to RUN_DIR/regrades/<id>/",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, runs/<run_id>")
    parser.add_argument("--judge-model", default="", metavar="M", help="judge the rubrics no test scores with M")
    parser.add_argument("--judge", default="openai", metavar="NAME", help="judge to use (default: openai)")
    parser.add_argument("--judge-base-url", default="", metavar="URL", help="Responses API base URL of the judge")
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="variable holding the key")
    parser.add_argument("--judge-timeout", type=float, default=120.0, metavar="SEC", help="seconds per judge call")
    parser.add_argument("--rubrics", type=Path, metavar="FILE", help="JSON rubrics to score instead of the task's")
    parser.add_argument(
        "--tasks", action="append", default=None, metavar="DIR", help="where the run's tasks are (default: tasks)"
    )
    parser.add_argument("--rerun-tests", action="store_true", help="apply each diff and run the hidden tests again")
    parser.add_argument("--sandbox", default="local", metavar="NAME", help="sandbox for --rerun-tests (default: local)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    args.tasks = args.tasks or ["tasks"]
    return regrade(args)
