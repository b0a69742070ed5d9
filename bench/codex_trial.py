"""What a Codex trial costs over a no-op agent, and how trials scale when the model is slow.

Run: ``PYTHONPATH=. python bench/codex_trial.py [--repeat 5] [--trials 16] [--latency 1.0]``.
Every codex run is the real CLI in the local sandbox against the scripted Responses server;
the no-op baseline is the ``command`` agent running ``true`` in the same sandbox. The
scaling part gives each model turn ``--latency`` seconds, as a real model would take, so
concurrency should overlap the waiting: the ideal speedup at concurrency c is c.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_oneshot.agent import Agent, AgentRequest
from pytest_oneshot.agent.builtin import CommandAgent
from pytest_oneshot.agent.codex import CodexAgent
from pytest_oneshot.model.cassette import Turn, apply_patch, exec_command, message
from pytest_oneshot.model.scripted import ScriptedResponsesServer
from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox import SandboxSpec
from pytest_oneshot.sandbox.local import LocalSandbox
from pytest_oneshot.task import Task, load_task

TASK_DIR = Path(__file__).resolve().parent.parent / "tasks" / "fix-off-by-one"


def three_turns(latency_sec: float) -> list[Turn]:
    patch = "*** Begin Patch\n*** Add File: bench.txt\n+bench\n*** End Patch\n"
    return [
        Turn(output=[exec_command("ls")], latency_sec=latency_sec),
        Turn(output=[apply_patch(patch)], latency_sec=latency_sec),
        Turn(output=[message("done")], latency_sec=latency_sec),
    ]


def trial(task: Task, repo: Path, agent: Agent, log_root: Path) -> float:
    """One sandboxed agent run; returns the agent's wall time in seconds."""
    trial_id = uuid.uuid4().hex[:12]
    sandbox = LocalSandbox(
        SandboxSpec(
            task=task,
            repo_snapshot=repo,
            trial_id=trial_id,
            run_id="bench",
            network=agent.network,
            mounts=agent.mounts(),
        )
    )
    log_dir = log_root / trial_id
    log_dir.mkdir()
    try:
        sandbox.start()
        started = time.perf_counter()
        result = agent.run(sandbox, AgentRequest(task, task.instructions, "bench-model", 120, log_dir))
        elapsed = time.perf_counter() - started
    finally:
        sandbox.stop()
    if result.status != "completed":
        raise SystemExit(f"bench trial did not complete: {result}")
    return elapsed


def codex_agent(server: ScriptedResponsesServer, latency_sec: float) -> CodexAgent:
    url = server.add_script(uuid.uuid4().hex[:12], three_turns(latency_sec))
    return CodexAgent({"model": "bench-model", "base_url": url})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs per agent for the overhead ratio")
    parser.add_argument("--trials", type=int, default=16, help="Trials per concurrency level")
    parser.add_argument("--latency", type=float, default=1.0, help="Seconds per model turn in the scaling part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-") as scratch, ScriptedResponsesServer() as server:
        root = Path(scratch)
        task = load_task(TASK_DIR)
        repo = snapshot(task, root / "cache")

        noop = [trial(task, repo, CommandAgent({"cmd": "true"}), root) for _ in range(args.repeat)]
        codex = [trial(task, repo, codex_agent(server, 0.0), root) for _ in range(args.repeat)]
        noop_median, codex_median = statistics.median(noop), statistics.median(codex)
        print(f"no-op agent      median {noop_median * 1000:8.1f} ms over {args.repeat} runs")
        print(f"codex, 3 turns   median {codex_median * 1000:8.1f} ms over {args.repeat} runs")
        print(f"codex / no-op    {codex_median / noop_median:8.1f}x")

        print(f"\n{args.trials} codex trials, {args.latency:g}s per model turn (3 turns each)")
        baseline = 0.0
        for concurrency in (1, 4, 8):
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda _: trial(task, repo, codex_agent(server, args.latency), root), range(args.trials)))
            wall = time.perf_counter() - started
            baseline = baseline or wall
            print(
                f"concurrency {concurrency}:  wall {wall:6.1f} s  {args.trials / wall:5.2f} trials/s  "
                f"speedup {baseline / wall:4.1f}x (ideal {concurrency}x)"
            )


if __name__ == "__main__":
    main()
