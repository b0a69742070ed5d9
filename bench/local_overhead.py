"""Local sandbox overhead per task: oracle trial time minus the bare test command's time.

For each shipped task it times (a) the whole trial (all phases, from the JSON report; repo
snapshots warm) and (b) the task's test command alone in a plain checkout with the
reference diff and hidden tests in place, then prints the difference per task.
Target: <= 0.3 s overhead per task on a 2-core machine.

    python bench/local_overhead.py [--repeat 3] [tasks/...]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_oneshot.scoring.tests import graded_tests
from pytest_oneshot.task import load_task

ROOT = Path(__file__).resolve().parent.parent
TARGET_SEC = 0.3


def harness_times(task_dirs: list[Path], work: Path) -> dict[str, float]:
    """Trial seconds per task (sum of phases) from one pytest run with the oracle agent."""
    report = work / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--oneshot-agent=oracle",
         f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}", *map(str, task_dirs)],
        check=True, capture_output=True, cwd=work,
    )  # fmt: skip
    items = json.loads(report.read_text())["items"]
    return {item["task_name"]: sum(item["phases"].values()) for item in items}


def bare_time(task_dir: Path, work: Path) -> float:
    """Seconds for the task's test command alone in a ready checkout (the floor)."""
    task = load_task(task_dir)
    checkout = work / f"bare-{task.name}"
    subprocess.run(["git", "clone", "-q", str(task.bundle_path), str(checkout)], check=True)
    subprocess.run(["git", "apply", "--binary", str(task.paths.reference_diff)], cwd=checkout, check=True)
    for path, data in task.hidden_files().items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_bytes(data)
    files = sorted({test.id.split("::", 1)[0] for test in graded_tests(task.spec)})
    command = f"{task.spec.tests.command} -p no:cacheprovider -q {shlex.join(files)}"
    # As in the sandbox: no warm .pyc either way, and `python` is this interpreter (not a shim on PATH,
    # such as pyenv's, which alone costs ~1 s a call).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PATH": path}
    subprocess.run(["bash", "-c", command], cwd=checkout, check=True, capture_output=True, env=env)  # warm-up
    started = time.monotonic()
    subprocess.run(["bash", "-c", command], cwd=checkout, check=True, capture_output=True, env=env)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The floor runs the tests with this Python: tasks with their own environment (a venv) are left out.
    own_python = [path for path in sorted((ROOT / "tasks").iterdir()) if not load_task(path).spec.environment.pip]
    parser.add_argument("tasks", nargs="*", type=Path, default=own_python)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    task_dirs = [path.resolve() for path in args.tasks if (path / "tb_meta.json").is_file()]
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-") as tmp:
        work = Path(tmp)
        harness_times(task_dirs, work)  # warm the repo snapshot cache
        trials: dict[str, list[float]] = {}
        bare: dict[str, list[float]] = {}
        for round_ in range(args.repeat):
            for name, seconds in harness_times(task_dirs, work).items():
                trials.setdefault(name, []).append(seconds)
            for task_dir in task_dirs:
                round_dir = work / f"round{round_}"
                round_dir.mkdir(exist_ok=True)
                bare.setdefault(task_dir.name, []).append(bare_time(task_dir, round_dir))
    print(f"{'task':30} {'trial s':>8} {'bare s':>8} {'overhead s':>10} {'ratio':>6}")
    overheads = []
    for name in sorted(trials):
        trial, floor = statistics.median(trials[name]), statistics.median(bare[name])
        overheads.append(trial - floor)
        print(f"{name:30} {trial:8.3f} {floor:8.3f} {trial - floor:10.3f} {trial / floor:6.2f}")
    mean = statistics.mean(overheads)
    print(f"mean overhead per task: {mean:.3f} s (target <= {TARGET_SEC} s): {'OK' if mean <= TARGET_SEC else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
