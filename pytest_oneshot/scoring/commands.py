"""Hidden tests that aren't pytest: any shell command, graded by its exit code, a reward file, or a
JUnit/CTRF report (``tests.mode``).

The same honesty rules as the pytest mode (:mod:`.tests`): the command is the task's and runs in the
fresh scoring sandbox on the scored tree (the agent's change minus test infrastructure, plus the
hidden files). The files a command names in the workspace (``bash run_tests.sh``) are test
infrastructure too, so the agent's change to them is not scored. Reports are read from a **verifier
directory outside the workspace** (``$HOME/.oneshot/verifier``, given to the command as
``$ONESHOT_VERIFIER_DIR``) that the harness removes and makes afresh right before the command runs:
nothing of the agent's change can be there, and nothing an earlier command left. Harbor-style report
paths under ``/logs/verifier/`` are read there too: the docker image links ``/logs/verifier`` to it.

A report that is missing, not a regular file, unparsable, out of range, or disagrees with the
command's exit code (a reward above 0 counts only from a command that exits 0) makes the run
untrusted (``problem``): a failed item, never a pass and never a harness error, since the agent's
code runs under the command and can cause each of these.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from pytest_oneshot.errors import InfraError
from pytest_oneshot.logcap import capped_output
from pytest_oneshot.sandbox import Sandbox
from pytest_oneshot.scoring.overlay import default_infrastructure
from pytest_oneshot.scoring.reports import ReportError, parse_ctrf, parse_junit, parse_reward
from pytest_oneshot.scoring.tests import WHOLE_COMMAND, TestRun, TestStatus, graded_tests, run_setup, untrusted
from pytest_oneshot.task import TaskSpec
from pytest_oneshot.task_tests import REPORT_DIR, VERIFIER_DIR

MAX_REPORT_BYTES = 64 << 20
_FRESH_DIR = rf"""
set -e
top="$HOME/{PurePosixPath(VERIFIER_DIR).parent}"; dir="$HOME/{VERIFIER_DIR}"
rm -rf -- "$dir"
if [ -L "$top" ] || [ ! -d "$top" ]; then rm -rf -- "$top"; mkdir -- "$top"; fi
mkdir -- "$dir"
cd -P -- "$dir"
pwd
"""
# `sh -c _READ sh DIR REPORT MAX`: the report as bytes, if it is a regular file (no symlink, FIFO or dir).
_READ = r"""
p="$1/$2"
[ -e "$p" ] || [ -L "$p" ] || exit 3
[ -f "$p" ] && [ ! -L "$p" ] || exit 4
exec head -c "$3" -- "$p"
"""


_INTERPRETERS = frozenset({"bash", "sh", "dash", "zsh", "python", "python3", "node", "ruby", "perl", "source", "."})
_SHELLS = frozenset({"bash", "sh", "dash", "zsh"})
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;"})


def command_paths(command: str) -> list[str]:
    """Workdir-relative paths a test command names (``bash tests/run.sh``, ``./check``, ``node t.js``,
    ``bash runtests``), after a ``cd DIR`` as ``DIR/...``, and inside ``bash -c '...'``."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        return []
    found: list[str] = []
    cwd: PurePosixPath | None = PurePosixPath()  # None: after a cd out of the workdir
    for index, word in enumerate(words):
        before = words[index - 1] if index else ""
        if word in _SEPARATORS or cwd is None:
            continue
        if before == "-c":  # a shell's script is searched too; other interpreters' code is not a path
            if index >= 2 and PurePosixPath(words[index - 2]).name in _SHELLS:
                found += [str(cwd / path) for path in command_paths(word)]
            continue
        value = word.split("=", 1)[-1]
        path = PurePosixPath(value)
        outside = path.is_absolute() or ".." in path.parts
        if before == "cd":
            cwd = None if outside or value.startswith(("-", "$", "~")) else cwd / path
        elif value.startswith(("-", "$")) or outside or str(path) == ".":
            continue
        elif "/" in value or path.suffix or PurePosixPath(before).name in _INTERPRETERS:
            found.append(str(cwd / path))
    return found


def command_infrastructure(spec: TaskSpec, hidden: list[str]) -> list[str]:
    """Non-pytest modes' test infrastructure: ``tests.infrastructure`` (default: the hidden files' test
    directories, else the files), and always every workspace path the command names."""
    declared = spec.tests.infrastructure or default_infrastructure(hidden)
    return sorted({*declared, *command_paths(spec.tests.command)})


def run_command_tests(sandbox: Sandbox, spec: TaskSpec, log: Path) -> TestRun:
    """Run ``tests.setup`` and the test command once in the scored tree, and read its verdict."""
    with capped_output(log) as capped:
        return _run(sandbox, spec, capped)


def _fresh_verifier_dir(sandbox: Sandbox, report: str | None) -> str:
    made = sandbox.exec(["sh", "-c", _FRESH_DIR], timeout=60)
    if not made.ok:
        raise InfraError("tests", f"could not make the verifier dir: {made.text().strip()[-300:]}")
    directory = made.stdout.decode("utf-8", "replace").strip()
    if report and PurePosixPath(report).is_absolute():
        link = sandbox.exec(["readlink", "-f", REPORT_DIR], timeout=60)
        if link.stdout.decode("utf-8", "replace").strip() != directory:
            raise InfraError(
                "tests",
                f"tests.report {report}: {REPORT_DIR} is not this run's verifier dir in this sandbox "
                "(Harbor-style report paths need --oneshot-sandbox=docker)",
            )
    return directory


def _read_report(sandbox: Sandbox, directory: str, report: str) -> bytes:
    read = sandbox.exec(["sh", "-c", _READ, "sh", directory, report, str(MAX_REPORT_BYTES)], timeout=60)
    if read.returncode == 3:
        raise ReportError(f"the test command wrote no {report}")
    if read.returncode == 4:
        raise ReportError(f"{report} is not a regular file")
    if not read.ok:
        raise ReportError(f"{report} cannot be read: {read.text().strip()[-200:]}")
    return read.stdout


def _cross_check(exit_code: int, results: dict[str, str], failed: int) -> str | None:
    """Why a report's results cannot be trusted, or None (as pytest mode's exit-status cross-check)."""
    if not results:
        return f"the test command's report lists no tests (exit code {exit_code})"
    if exit_code == 0 and failed:
        return "the test command exited 0 but its report lists failures"
    if exit_code != 0 and not failed:
        return f"the test command exited {exit_code} but its report lists no failure"
    return None


def _run(sandbox: Sandbox, spec: TaskSpec, log: Path) -> TestRun:
    kinds = {test.id: test.kind for test in graded_tests(spec)}
    failed_setup = run_setup(sandbox, spec, log)
    if failed_setup is not None:
        return failed_setup
    report = spec.tests.report_file
    directory = _fresh_verifier_dir(sandbox, report)
    timeout = spec.limits.tests_timeout_sec
    run = sandbox.exec(
        ["bash", "-c", spec.tests.command], env={"ONESHOT_VERIFIER_DIR": directory}, timeout=timeout, output=log
    )
    if run.timed_out:
        return untrusted(spec, f"tests timed out after {timeout:.0f}s", run.returncode, True)
    if report is None:  # exit_code
        status: TestStatus = "passed" if run.returncode == 0 else "failed"
        return TestRun(statuses={WHOLE_COMMAND: status}, kinds=kinds, exit_code=run.returncode)
    if PurePosixPath(report).is_absolute():  # under /logs/verifier, which is this directory
        report = str(PurePosixPath(report).relative_to(REPORT_DIR))
    try:
        data = _read_report(sandbox, directory, report)
        if spec.tests.mode == "reward":
            reward = parse_reward(data, report)
            if reward > 0 and run.returncode != 0:  # e.g. the code under test planted it, then killed the check
                raise ReportError(f"{report} holds reward {reward:g} but the test command did not exit 0")
            status = "passed" if reward == 1.0 else "failed"
            return TestRun(statuses={WHOLE_COMMAND: status}, kinds=kinds, exit_code=run.returncode, reward=reward)
        results, failed = (parse_junit if spec.tests.mode == "junit" else parse_ctrf)(data, report)
    except ReportError as exc:
        return untrusted(spec, f"{exc} (exit code {run.returncode}); see tests.log", run.returncode)
    statuses: dict[str, TestStatus] = {test_id: _STATUS.get(results.get(test_id, ""), "missing") for test_id in kinds}
    problem = _cross_check(run.returncode, results, failed)
    return TestRun(statuses=statuses, kinds=kinds, exit_code=run.returncode, problem=problem)


_STATUS: dict[str, TestStatus] = {"passed": "passed", "skipped": "skipped", "failed": "failed", "error": "error"}
