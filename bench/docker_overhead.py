"""Docker sandbox overhead per task, and how many images a parallel run builds.

1. Per task, on warm images: the oracle trial (all phases, from the JSON report) against
   the floor any Docker harness pays: a bare ``docker run --rm IMAGE true`` plus the task's
   test command run directly (``docker exec`` in a ready container holding the reference
   diff and the hidden tests). Target: trial / floor <= 1.3.
2. Eight copies of one task on two environments (two setup lines, fresh this run), run with
   ``-n 4``: image builds counted in the builds log. Target: 2.

    python bench/docker_overhead.py [--repeat 3] [tasks/...]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox.docker_image import builds_log, environment_image
from pytest_oneshot.sandbox.dockerd import Engine, ensure_engine
from pytest_oneshot.scoring.tests import graded_tests
from pytest_oneshot.task import Task, load_task

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3


def run_pytest(work: Path, *args: str) -> list[dict[str, object]]:
    """One oracle run on the docker sandbox; the JSON report's items."""
    report = work / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--oneshot-sandbox=docker",
         "--oneshot-agent=oracle", f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}", *args],
        check=True, capture_output=True, cwd=work, env={**os.environ, "ONESHOT_CACHE_DIR": str(work / "cache")},
    )  # fmt: skip
    items: list[dict[str, object]] = json.loads(report.read_text())["items"]
    return items


def harness_times(task_dirs: list[Path], work: Path) -> dict[str, float]:
    """Trial seconds per task (sum of phases)."""
    items = run_pytest(work, *map(str, task_dirs))
    assert all(item["outcome"] == "passed" for item in items), [item["reason"] for item in items]
    return {str(item["task_name"]): sum(item["phases"].values()) for item in items}  # type: ignore[attr-defined]


def _docker(engine: Engine, *args: str, input: bytes | None = None, check: bool = True) -> float:
    """One docker CLI command, timed: the floor is what a plain ``docker run`` and ``docker exec`` cost."""
    started = time.monotonic()
    subprocess.run(["docker", "--host", engine.host, *args], input=input, check=check, capture_output=True)
    return time.monotonic() - started


def floor_time(engine: Engine, task: Task, work: Path) -> float:
    """Seconds of ``docker run --rm IMAGE true`` plus the test command in a ready container."""
    image = environment_image(engine, task, snapshot(task, work / "cache"), cache_dir=work / "cache")
    bare_run = _docker(engine, "run", "--rm", "--network", "none", "--entrypoint", "true", image)
    name = f"oneshot-bench-{secrets.token_hex(4)}"
    _docker(engine, "run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep", image, "infinity")
    try:
        _docker(engine, "exec", "-i", name, "git", "apply", "--binary", "-", input=task.reference_patch())
        for path, data in task.hidden_files().items():
            write = 'mkdir -p "$(dirname "$1")" && cat > "$1"'
            _docker(engine, "exec", "-i", name, "sh", "-c", write, "sh", path, input=data)
        files = sorted({test.id.split("::", 1)[0] for test in graded_tests(task.spec)})
        command = f"{task.spec.tests.command} -p no:cacheprovider -q {shlex.join(files)}"
        return bare_run + _docker(engine, "exec", name, "bash", "-c", command)
    finally:
        _docker(engine, "rm", "-f", name, check=False)


def builds_for_two_environments(source: Path, work: Path) -> int:
    """Image builds for 8 copies of ``source`` on 2 fresh environments at ``-n 4``."""
    salt = secrets.token_hex(4)
    tasks = work / "eight"
    for index in range(8):
        dest = tasks / f"{source.name}-{index}"
        shutil.copytree(source, dest)
        meta = json.loads((dest / "tb_meta.json").read_text())
        meta["task_id"] = dest.name
        meta.setdefault("environment", {})["setup"] = [f"echo environment-{index % 2}-{salt} > /tmp/env"]
        (dest / "tb_meta.json").write_text(json.dumps(meta))
    before = len(builds_log(work / "cache").read_text().splitlines()) if builds_log(work / "cache").exists() else 0
    items = run_pytest(work, "-n", "4", str(tasks))
    assert len(items) == 8 and all(item["outcome"] == "passed" for item in items)
    built = builds_log(work / "cache").read_text().splitlines()[before:]
    for line in built:
        _docker(ensure_engine(), "rmi", line.split("\t")[1], check=False)
    return len(built)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", type=Path, default=sorted((ROOT / "tasks").iterdir()))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engine = ensure_engine()
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-") as tmp:
        work = Path(tmp)
        task_dirs = []  # copies under the run's rootdir
        for path in args.tasks:
            if (path / "tb_meta.json").is_file():
                task_dirs.append(Path(shutil.copytree(path, work / "tasks" / path.name)))
        harness_times(task_dirs, work)  # warm: base image, task images, repo snapshots
        trials: dict[str, list[float]] = {}
        floors: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for name, seconds in harness_times(task_dirs, work).items():
                trials.setdefault(name, []).append(seconds)
            for task_dir in task_dirs:
                floors.setdefault(task_dir.name, []).append(floor_time(engine, load_task(task_dir), work))
        builds = builds_for_two_environments(task_dirs[0], work)
    print(f"{'task':30} {'trial s':>8} {'floor s':>8} {'ratio':>6}")
    ratios = []
    for name in sorted(trials):
        trial, floor = statistics.median(trials[name]), statistics.median(floors[name])
        ratios.append(trial / floor)
        print(f"{name:30} {trial:8.2f} {floor:8.2f} {trial / floor:6.2f}")
    worst = max(ratios)
    print(f"worst ratio {worst:.2f} (target <= {TARGET_RATIO}): {'ok' if worst <= TARGET_RATIO else 'OVER'}")
    print(f"image builds for 8 tasks on 2 environments at -n 4: {builds} (target 2): {'ok' if builds == 2 else 'OVER'}")
    return 0 if worst <= TARGET_RATIO and builds == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
