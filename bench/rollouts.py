"""Many codex rollouts of one task against a slow scripted model: whole ``pytest`` processes.

The task is a copy of ``tasks/fix-off-by-one`` whose cassette has two model turns (the fix,
then "done"), each taking ``--latency`` seconds, as a real model would. Every trial runs the
real codex CLI in the local sandbox. For each configuration it prints the wall time and the CPU
time of the whole process tree -- measured in a cpuacct cgroup, because the processes in a
bubblewrap sandbox are not reaped by the harness and rusage misses them -- and compares the
wall time with the physical bound:

    bound = max(latency bound, CPU bound)
    latency bound = ceil(trials / concurrency) rounds x the wall time of one trial at -n 1
    CPU bound     = the CPU of the serial run (-n 1) / cores

The harness's own CPU per trial is what a trial costs besides the codex CLI (the same run with
the ``command`` agent making the same fix) and besides the task's own test command (run alone
in a checkout).

    python bench/rollouts.py [--trials 16] [--concurrency 8] [--latency 1.0] [--without-concurrency]

The harness's pytest keeps Python's bytecode cache, as on a user's machine (a
``PYTHONDONTWRITEBYTECODE`` here is dropped; see ``bench/docker_overhead.py``).
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
    # The recorded judge answers are for the shipped diff, not this one: its rubric stays unjudged.
    shutil.rmtree(task / "cassettes" / "judge", ignore_errors=True)
    return task


@dataclass
class Measured:
    label: str
    wall: float
    cpu: float
    passed: int


class CpuMeter:
    """CPU seconds of a process tree: a cpuacct cgroup (v1) when writable, else rusage (undercounts)."""

    def __init__(self) -> None:
        self.group: Path | None = Path("/sys/fs/cgroup/cpuacct") / f"oneshot-bench-{os.getpid()}"
        try:
            self.group.mkdir()
        except OSError:
            self.group = None
            print("note: no writable cpuacct cgroup; CPU from rusage misses sandboxed processes")

    def run(self, argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
        if self.group is None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(argv, cwd=cwd, text=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return done, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        usage, procs = self.group / "cpuacct.usage", self.group / "cgroup.procs"
        before_ns = int(usage.read_text())
        done = subprocess.run(argv, cwd=cwd, text=True, capture_output=True,
                              preexec_fn=lambda: procs.write_text(str(os.getpid())))  # fmt: skip
        return done, (int(usage.read_text()) - before_ns) / 1e9

    def close(self) -> None:
        if self.group is not None:
            self.group.rmdir()


def run_pytest(meter: CpuMeter, label: str, task: Path, work: Path, trials: int, *flags: str) -> Measured:
    """One whole ``pytest`` process: wall time, CPU of its process tree, and passed items."""
    report = work / f"report-{len(list(work.glob('report-*')))}.json"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            f"--oneshot-rollouts={trials}", f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}",
            *flags, str(task)]  # fmt: skip
    started = time.perf_counter()
    run, cpu = meter.run(argv, work)
    wall = time.perf_counter() - started
    if run.returncode not in (0, 1):
        sys.exit(f"{label}: pytest exited {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    passed = sum(item["outcome"] == "passed" for item in json.loads(report.read_text())["items"])
    return Measured(label, wall, cpu, passed)


def test_command_cpu(meter: CpuMeter, task_dir: Path, work: Path, runs: int = 3) -> float:
    """CPU seconds of the task's test command alone, on its graded files, in a fixed checkout (median)."""
    from pytest_oneshot.scoring.tests import graded_files
    from pytest_oneshot.task import load_task

    task = load_task(task_dir)
    checkout = work / "checkout"
    subprocess.run(["git", "clone", "-q", str(task.bundle_path), str(checkout)], check=True)
    subprocess.run(["git", "apply", "--binary", str(task.paths.reference_diff)], cwd=checkout, check=True)
    for path, data in task.hidden_files().items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_bytes(data)
    # As the harness runs it: without this plugin (inert in a sandbox, and kept out of the test run).
    argv = [sys.executable, "-B", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:oneshot"]
    argv += graded_files(task.spec)
    spent = sorted(meter.run(argv, checkout)[1] for _ in range(runs))
    return spent[len(spent) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--without-concurrency", action="store_true",
                        help="skip the --oneshot-concurrency runs (to measure a version without it)")  # fmt: skip
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    cores = os.cpu_count() or 1
    n, c = args.trials, args.concurrency
    same_fix = "--oneshot-agent-cmd=sed -i 's|total_items // per_page)|-(-total_items // per_page))|' pager/core.py"
    meter = CpuMeter()
    try:
        with tempfile.TemporaryDirectory(prefix="oneshot-bench-rollouts-") as tmp:
            work = Path(tmp)
            task = slow_task(work, args.latency)
            run_pytest(meter, "warm-up", task, work, 1)
            tests_cpu = test_command_cpu(meter, task, work)
            command = run_pytest(meter, "command agent, -n 1", task, work, n, "-n", "1", "--oneshot-agent=command",
                                 same_fix)  # fmt: skip
            serial = run_pytest(meter, "-n 1", task, work, n, "-n", "1")
            measured = [serial, run_pytest(meter, f"-n {c}", task, work, n, "-n", str(c))]
            if not args.without_concurrency:
                measured.append(run_pytest(meter, f"-n 1 --oneshot-concurrency {c}", task, work, n, "-n", "1",
                                           f"--oneshot-concurrency={c}"))  # fmt: skip
                measured.append(run_pytest(meter, f"no xdist, --oneshot-concurrency {c}", task, work, n,
                                           "-p", "no:xdist", f"--oneshot-concurrency={c}"))  # fmt: skip
    finally:
        meter.close()
    rounds = math.ceil(n / c)
    bound = max(rounds * serial.wall / n, serial.cpu / cores)
    codex = (serial.cpu - command.cpu) / n
    print(f"{n} rollouts, {args.latency:g} s per model turn (2 turns), {cores} cores")
    print("CPU per trial at -n 1:")
    rest = command.cpu / n
    print(f"  {serial.cpu / n:.3f} s = codex CLI {codex:.3f} s (vs the command agent) + the rest {rest:.3f} s")
    print(f"  the rest = the task's test command alone {tests_cpu:.3f} s + the harness {rest - tests_cpu:.3f} s")
    print(f"bound at concurrency {c}: max(latency {rounds} x {serial.wall / n:.2f} s, CPU {serial.cpu:.1f} s / {cores})"
          f" = {bound:.2f} s")  # fmt: skip
    print(f"{'configuration':38} {'wall s':>7} {'CPU s':>7} {'CPU/trial':>9} {'passed':>7} {'vs bound':>8}")
    for run in [command, *measured]:
        print(f"{run.label:38} {run.wall:7.1f} {run.cpu:7.1f} {run.cpu / n:9.3f} {run.passed:>3}/{n:<3} "
              f"{run.wall / bound:7.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
