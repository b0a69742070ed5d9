"""The launcher records a test's outcome only once the test has run to its end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_oneshot.scoring.tests import LAUNCHER

TESTS = "def test_fails():\n    assert 1 == 2\n\n\ndef test_passes():\n    pass\n"


def run_launcher(project: Path, *args: str) -> tuple[int, dict[str, object]]:
    """Run the launcher the way the scoring phase does (isolated, no site hooks) in ``project``."""
    results = project / "results.json"
    env = {"ONESHOT_WORKSPACE": str(project), "ONESHOT_RESULTS": str(results), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-I", "-S", "-B", "-c", LAUNCHER.read_text(), "-p", "no:cacheprovider", *args]
    run = subprocess.run(argv, cwd=project, env=env, capture_output=True, timeout=120)
    return run.returncode, json.loads(results.read_text())


def test_outcomes_are_recorded_per_test(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(TESTS)
    exit_code, recorded = run_launcher(tmp_path, "test_a.py")
    assert exit_code == recorded["exitstatus"] == 1
    assert recorded["statuses"] == {"test_a.py::test_fails": "failed", "test_a.py::test_passes": "passed"}


def test_a_run_cut_short_after_setup_leaves_the_test_unrecorded(tmp_path: Path) -> None:
    """The reporting of a call phase fails (as when the code under test kills the process reading
    pytest's output, and the terminal writer gets a broken pipe): the test passed its setup, but
    it never finished, so it must not be recorded as passed."""
    (tmp_path / "test_a.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text(
        "def pytest_runtest_logreport(report):\n"
        "    if report.when == 'call':\n"
        "        raise BrokenPipeError(32, 'Broken pipe')\n"
    )
    exit_code, recorded = run_launcher(tmp_path, "test_a.py")
    assert exit_code == recorded["exitstatus"] == 3  # pytest's internal error
    assert "passed" not in recorded["statuses"].values()  # type: ignore[union-attr]


def test_a_teardown_error_outranks_a_passing_call(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef broken():\n    yield\n    raise RuntimeError('teardown')\n\n\n"
        "def test_passes(broken):\n    pass\n"
    )
    _, recorded = run_launcher(tmp_path, "test_a.py")
    assert recorded["statuses"] == {"test_a.py::test_passes": "error"}


# A conftest that runs each test's protocol twice, as rerun plugins do: the same node id is reported twice.
RUN_TWICE = """\
import pytest
from _pytest.runner import runtestprotocol


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for run in ("first", "second"):
        item.config.stash_run = run
        runtestprotocol(item, nextitem=nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""
BREAKS_ON = """\
import pytest


@pytest.fixture
def breaks(request):
    yield
    if request.config.stash_run == {run!r}:
        raise RuntimeError("teardown of the {run} run")


def test_passes(breaks):
    pass
"""


@pytest.mark.parametrize("run", ["first", "second"])
def test_a_test_reported_twice_keeps_its_worst_outcome(tmp_path: Path, run: str) -> None:
    """Passing once and erroring in teardown once is an error, whichever came first."""
    (tmp_path / "conftest.py").write_text(RUN_TWICE)
    (tmp_path / "test_a.py").write_text(BREAKS_ON.format(run=run))
    exit_code, recorded = run_launcher(tmp_path, "test_a.py")
    assert exit_code == recorded["exitstatus"] == 1
    assert recorded["statuses"] == {"test_a.py::test_passes": "error"}
