"""Docker sandbox overhead, and how many images a parallel run builds. It prints; it asserts nothing.

1. Whole process, paired, warm images (the ratio to watch): ``--trials`` oracle trials of a task
   in one ``pytest`` process, one at a time (``-n 0``) and two at a time (``-n 2``, and in one
   process with ``--oneshot-concurrency 2``), against the
   floor any Docker harness pays for the same work: as many ``docker run --rm`` of the task
   image, one (or two) at a time, each applying the reference fix, writing the hidden tests and
   running the task's test command (pytest) on the graded tests. Target: <= 1.3.
2. Per task, the previous measure: the oracle trial (sum of its phases, from the JSON report)
   against a bare ``docker run --rm IMAGE true`` plus the test command run in a ready container.
3. Eight copies of one task on two environments (two setup lines, fresh this run), run with
   ``-n 4``: image builds counted in the builds log. Target: 2.

    python bench/docker_overhead.py [--repeat 3] [--trials 8] [tasks/...]

The harness's pytest runs as on a user's machine, with Python's bytecode cache: a
``PYTHONDONTWRITEBYTECODE`` in this environment (this machine sets it) is dropped, as otherwise
every pytest process compiles, and pytest rewrites, the plugin's modules again (~0.25 s each),
which the floor's pytest, installed in the image, does not pay.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_oneshot.repo import snapshot
from pytest_oneshot.sandbox.docker_image import builds_log, environment_image
from pytest_oneshot.sandbox.dockerd import Engine, ensure_engine
from pytest_oneshot.scoring.tests import graded_tests, selection
from pytest_oneshot.task import Task, load_task

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3


def run_pytest(work: Path, *args: str) -> list[dict[str, object]]:
    """One oracle run on the docker sandbox; the JSON report's items."""
    report = work / "report.json"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--oneshot-sandbox=docker",
         "--oneshot-agent=oracle", f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}", *args],
        capture_output=True, text=True, cwd=work, env={**env, "ONESHOT_CACHE_DIR": str(work / "cache")},
    )  # fmt: skip
    if run.returncode != 0:  # keep what pytest said: an item error's traceback is not in the JSON report
        sys.exit(f"pytest {' '.join(args)} exited {run.returncode}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
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


def floor_run_argv(engine: Engine, task: Task, image: str) -> tuple[list[str], bytes]:
    """``docker run --rm`` doing one trial's work by hand, and its stdin (the fix and hidden files, a tar)."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        for name, data in {
            "fix.patch": task.reference_patch(),
            **{f"hidden/{p}": d for p, d in task.hidden_files().items()},
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tests = f"{task.spec.tests.command} -p no:cacheprovider -q {shlex.join(selection(graded_tests(task.spec)))}"
    script = (
        "set -e; mkdir /tmp/in; tar -x -C /tmp/in; git apply --binary /tmp/in/fix.patch; "
        f"if [ -d /tmp/in/hidden ]; then cp -r /tmp/in/hidden/. .; fi; {tests}"
    )
    argv = [
        "docker",
        "--host",
        engine.host,
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        script,
    ]
    return argv, payload.getvalue()


def floor_wall(engine: Engine, task: Task, work: Path, trials: int, parallel: int) -> float:
    """Wall seconds of ``trials`` floor runs, ``parallel`` at a time."""
    image = environment_image(engine, task, snapshot(task, work / "cache"), cache_dir=work / "cache")
    argv, stdin = floor_run_argv(engine, task, image)

    def one(_: int) -> None:
        done = subprocess.run(argv, input=stdin, capture_output=True)
        if done.returncode != 0:
            sys.exit(f"floor run failed for {task.name}: {done.stdout[-2000:]!r} {done.stderr[-2000:]!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, range(trials)))
    return time.perf_counter() - started


MODES = {"-n 1": (1, ["-n", "0"]), "-n 2": (2, ["-n", "2"]), "-c 2": (2, ["-n", "0", "--oneshot-concurrency=2"])}
"""Column -> (trials at a time, pytest arguments); ``-c 2``: two trials in flight in one process."""


def harness_wall(task_dir: Path, work: Path, trials: int, args: list[str]) -> float:
    """Wall seconds of one whole ``pytest`` process running ``trials`` oracle trials of the task."""
    started = time.perf_counter()
    items = run_pytest(work, f"--oneshot-rollouts={trials}", *args, str(task_dir))
    wall = time.perf_counter() - started
    assert all(item["outcome"] == "passed" for item in items), [item["reason"] for item in items]
    return wall


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
    default_tasks = [
        ROOT / "tasks" / name for name in ("fix-off-by-one", "add-exclude-option", "fix-tomli-loads-type-error")
    ]
    parser.add_argument("tasks", nargs="*", type=Path, default=default_tasks)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    engine = ensure_engine()
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-") as tmp:
        work = Path(tmp)
        task_dirs = []  # copies under the run's rootdir
        for path in args.tasks:
            if (path / "tb_meta.json").is_file():
                task_dirs.append(Path(shutil.copytree(path, work / "tasks" / path.name)))
        harness_times(task_dirs, work)  # warm: base image, task images, repo snapshots
        whole: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):  # paired: each harness run next to its floor
            for task_dir in task_dirs:
                task = load_task(task_dir)
                for mode, (parallel, pytest_args) in MODES.items():
                    harness = harness_wall(task_dir, work, args.trials, pytest_args)
                    floor = floor_wall(engine, task, work, args.trials, parallel)
                    whole.setdefault((task.name, mode), []).append(harness / floor)
        trials: dict[str, list[float]] = {}
        floors: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for name, seconds in harness_times(task_dirs, work).items():
                trials.setdefault(name, []).append(seconds)
            for task_dir in task_dirs:
                floors.setdefault(task_dir.name, []).append(floor_time(engine, load_task(task_dir), work))
        builds = builds_for_two_environments(task_dirs[0], work)
    print(
        f"{args.trials} oracle trials per pytest process vs {args.trials} `docker run --rm` doing the same work "
        f"(median of {args.repeat} paired runs); previous measure: one trial's phases vs run+exec"
    )
    print(f"{'task':30} {'-n 1':>6} {'-n 2':>6} {'-c 2':>6} {'previous':>9}")
    for name in sorted(trials):
        previous = statistics.median(trials[name]) / statistics.median(floors[name])
        now = "".join(f" {statistics.median(whole[(name, mode)]):6.2f}" for mode in MODES)
        print(f"{name:30}{now} {previous:9.2f}")
    for mode in MODES:
        worst = max(statistics.median(ratios) for (_, of), ratios in whole.items() if of == mode)
        print(f"worst whole-process ratio at {mode}: {worst:.2f} (target <= {TARGET_RATIO})")
    print("-c 2: -n 0 --oneshot-concurrency 2, against the floor two at a time")
    print(f"image builds for 8 tasks on 2 environments at -n 4: {builds} (target 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
