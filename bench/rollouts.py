"""Many codex rollouts of one task against a slow scripted model: whole ``pytest`` process.

The task is a copy of ``tasks/fix-off-by-one`` whose cassette has two model turns (the fix,
then "done"), each taking ``--latency`` seconds, as a real model would. Every trial runs the
real codex CLI in the local sandbox. For each configuration it prints the wall time and the CPU
time of the whole process tree, and compares the wall time with the physical bound:

    bound = max(latency bound, CPU bound)
    latency bound = ceil(trials / concurrency) rounds x the latency of one trial at -n 1
    CPU bound     = the CPU of the serial run (-n 1) / cores

It also measures the codex CLI's own CPU per run (the agent alone in a sandbox, no pytest),
so the harness's own CPU per trial (total / trials - codex) is printed too.

    python bench/rollouts.py [--trials 16] [--concurrency 8] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TASK = ROOT / "tasks" / "fix-off-by-one"
FIX = (
    "*** Begin Patch\n*** Update File: pager/core.py\n@@\n"
    "-    return max(1, total_items // per_page)\n+    return max(1, -(-total_items // per_page))\n"
    "*** End Patch\n"
)


def slow_task(work: Path, latency: float) -> Path:
    """The bench task: two turns of ``latency`` seconds each."""
    task = work / "tasks" / "slow-fix"
    shutil.copytree(SOURCE_TASK, task)
    cassette_path = task / "cassettes" / "replay.json"
    cassette = json.loads(cassette_path.read_text())
    usage = {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 10}
    cassette["turns"] = [
        {"output": [{"type": "custom_tool_call", "call_id": "fix", "name": "apply_patch", "input": FIX}],
         "usage": usage, "latency_sec": latency},
        {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}],
         "usage": usage, "latency_sec": latency},
    ]  # fmt: skip
    cassette_path.write_text(json.dumps(cassette))
    return task


@dataclass
class Measured:
    label: str
    wall: float
    cpu: float
    passed: int


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pytest(label: str, task: Path, work: Path, trials: int, *flags: str) -> Measured:
    """One whole ``pytest`` process: wall time, CPU of its process tree, and passed items."""
    report = work / f"report-{label.replace(' ', '_')}.json"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            f"--oneshot-rollouts={trials}", f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}",
            *flags, str(task)]  # fmt: skip
    cpu_before, started = children_cpu(), time.perf_counter()
    run = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
    if run.returncode not in (0, 1):
        sys.exit(f"{label}: pytest exited {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    passed = sum(item["outcome"] == "passed" for item in json.loads(report.read_text())["items"])
    return Measured(label, wall, cpu, passed)


def codex_cpu(task_dir: Path, work: Path, runs: int) -> float:
    """CPU seconds of one codex CLI run: the agent alone in a local sandbox, turns without latency."""
    from pytest_oneshot.agent import AgentRequest
    from pytest_oneshot.agent.codex import CodexAgent
    from pytest_oneshot.gateway import ModelGateway
    from pytest_oneshot.replay import ReplayService
    from pytest_oneshot.repo import snapshot
    from pytest_oneshot.sandbox import SandboxSpec
    from pytest_oneshot.sandbox.local import LocalSandbox
    from pytest_oneshot.task import load_task

    task = load_task(task_dir)
    repo = snapshot(task, work / "cache")
    agent = CodexAgent({})
    replay, gateway = ReplayService(), ModelGateway()
    spent = []
    try:
        for run in range(runs + 1):  # the first run warms caches
            trial_id = f"codex-cpu-{run}"
            route = gateway.open(trial_id, model="replay", limit=None,
                                 upstream=replay.endpoint(task, "replay", trial_id))  # fmt: skip
            spec = SandboxSpec(task=task, repo_snapshot=repo, trial_id=trial_id, run_id="bench",
                               network=agent.network, mounts=agent.mounts())  # fmt: skip
            sandbox = LocalSandbox(spec)
            sandbox.start()
            log_dir = work / trial_id
            log_dir.mkdir()
            try:
                before = children_cpu()
                result = agent.run(sandbox, AgentRequest(task, task.instructions, "replay", 120, log_dir,
                                                         endpoint=route.endpoint))  # fmt: skip
                if run:
                    spent.append(children_cpu() - before)
                if result.status != "completed":
                    sys.exit(f"codex run: {result.status}: {result.message}")
            finally:
                route.close(None)
                sandbox.stop()
    finally:
        gateway.close()
        replay.close()
    return sum(spent) / len(spent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-rollouts-") as tmp:
        work = Path(tmp)
        task = slow_task(work, args.latency)
        run_pytest("warm-up", task, work, 1)
        codex = codex_cpu(slow_task(work / "instant", 0.0), work, runs=4)
        serial = run_pytest("-n 1", task, work, args.trials, "-n", "1")
        one_trial = serial.wall / args.trials
        rounds = math.ceil(args.trials / args.concurrency)
        bound = max(rounds * one_trial, serial.cpu / cores)
        measured = [
            serial,
            run_pytest(f"-n {args.concurrency}", task, work, args.trials, "-n", str(args.concurrency)),
            run_pytest(
                f"-n 1 --oneshot-concurrency {args.concurrency}",
                task,
                work,
                args.trials,
                "-n",
                "1",
                f"--oneshot-concurrency={args.concurrency}",
            ),
            run_pytest(
                f"no xdist, --oneshot-concurrency {args.concurrency}",
                task,
                work,
                args.trials,
                "-p",
                "no:xdist",
                f"--oneshot-concurrency={args.concurrency}",
            ),
        ]
    print(f"{args.trials} rollouts, {args.latency:g} s per model turn (2 turns), {cores} cores")
    print(f"codex CLI alone: {codex:.3f} s CPU per run")
    print(f"bound at concurrency {args.concurrency}: max(latency {rounds} x {one_trial:.2f} s, "
          f"CPU {serial.cpu:.1f} s / {cores}) = {bound:.2f} s")  # fmt: skip
    print(f"{'configuration':40} {'wall s':>7} {'CPU s':>7} {'CPU/trial':>9} {'harness CPU/trial':>17} "
          f"{'passed':>6} {'vs bound':>8}")  # fmt: skip
    for run in measured:
        per_trial = run.cpu / args.trials
        print(f"{run.label:40} {run.wall:7.1f} {run.cpu:7.1f} {per_trial:9.3f} {per_trial - codex:17.3f} "
              f"{run.passed:>3}/{args.trials:<2} {run.wall / bound:7.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
