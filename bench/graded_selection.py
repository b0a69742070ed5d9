"""What running only the graded tests saves on real-repo tasks: graded node ids vs whole test files.

For each task, an oracle trial runs as shipped (pytest gets the graded node ids) and as a copy
whose graded ids are replaced by their files (pytest runs every test in them, as the harness
did before node-id selection). Runs alternate (paired), whole pytest processes; the tests
phase and the whole trial are compared as medians.

    python bench/graded_selection.py [--repeat 3] [--sandbox local|docker] [tasks/...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL_TASKS = [ROOT / "tasks" / "fix-scm-empty-repo-fallback", ROOT / "tasks" / "fix-tomli-loads-type-error"]


def whole_files_copy(task_dir: Path, dest: Path) -> Path:
    """The task with every graded id replaced by its file."""
    shutil.copytree(task_dir, dest)
    meta = json.loads((dest / "tb_meta.json").read_text())
    tests = meta["tests"]
    files = sorted({test_id.split("::", 1)[0] for test_id in tests["fail_to_pass"] + tests["pass_to_pass"]})
    tests["fail_to_pass"], tests["pass_to_pass"] = files, []
    (dest / "tb_meta.json").write_text(json.dumps(meta))
    return dest


def trial(task_dir: Path, work: Path, sandbox: str, *, must_pass: bool) -> dict[str, float]:
    report = work / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--oneshot-sandbox={sandbox}",
         "--oneshot-agent=oracle", f"--oneshot-runs-dir={work / 'runs'}", f"--oneshot-json={report}", str(task_dir)],
        check=False, capture_output=True, cwd=work, env={**os.environ, "ONESHOT_CACHE_DIR": str(work / "cache")},
    )  # fmt: skip
    (item,) = json.loads(report.read_text())["items"]
    assert item["outcome"] == "passed" or not must_pass, item["reason"]  # a whole file may hold skips
    return {
        "tests": item["phases"]["tests"],
        "trial": sum(item["phases"].values()),
        "count": len(item["tests"]["statuses"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", type=Path, default=REAL_TASKS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sandbox", default="local")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="oneshot-bench-") as tmp:
        work = Path(tmp)
        for task_dir in args.tasks:
            graded = Path(shutil.copytree(task_dir, work / "tasks" / task_dir.name))
            whole = whole_files_copy(task_dir, work / "tasks-whole" / task_dir.name)
            trial(graded, work, args.sandbox, must_pass=True)  # warm: environments, images
            trial(whole, work, args.sandbox, must_pass=False)
            runs: dict[str, list[dict[str, float]]] = {"graded": [], "whole": []}
            for _ in range(args.repeat):
                runs["graded"].append(trial(graded, work, args.sandbox, must_pass=True))
                runs["whole"].append(trial(whole, work, args.sandbox, must_pass=False))
            rows.append((task_dir.name, runs))
    print(f"{'task':30} {'mode':7} {'tests s':>8} {'trial s':>8}")
    for name, runs in rows:
        medians = {mode: {key: statistics.median(run[key] for run in values) for key in ("tests", "trial")}
                   for mode, values in runs.items()}  # fmt: skip
        for mode in ("graded", "whole"):
            print(f"{name:30} {mode:7} {medians[mode]['tests']:8.2f} {medians[mode]['trial']:8.2f}")
        saved = medians["whole"]["tests"] / medians["graded"]["tests"]
        print(f"{name:30} whole files / graded ids: tests phase {saved:.2f}x, "
              f"trial {medians['whole']['trial'] / medians['graded']['trial']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
