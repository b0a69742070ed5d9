"""Runs the hidden tests inside the scoring sandbox: ``python -I -S -B -c <this file> PYTEST_ARGS``.

Not imported by the harness: its source is passed to the sandbox's interpreter, so it uses the
standard library and pytest only. It makes ``python -m pytest`` safe against the scored tree:

- ``-I`` (isolated mode): no current directory or PYTHONPATH on ``sys.path`` at start-up, no
  user site-packages, no ``PYTHON*`` variables; ``-B``: no bytecode written or trusted; ``-S``:
  no ``site`` at start-up, so no ``sitecustomize`` (or a module it imports) can be found through
  a workspace directory an editable install's ``.pth`` file adds. The site-packages directories
  (a venv's included) are added here instead, the way ``site`` does, without its start-up hooks.
- pytest, its own modules and the plugins installed in the environment are imported while no
  workspace directory is on ``sys.path`` (entries an editable install's ``.pth`` put there are
  held back), so no file of the workspace can stand in for them, and an ``*.egg-info`` or
  ``*.dist-info`` in the workspace registers no plugin.
- Only then, before the first conftest is loaded, the workspace joins ``sys.path`` exactly as
  ``python -m pytest`` would have put it there (the working directory, then PYTHONPATH).
- Per-test results are recorded by node id (relative to the working directory) in a JSON file
  named by ``ONESHOT_RESULTS``, with pytest's exit status, for the harness to cross-check.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import sys

_WORKSPACE = os.path.realpath(os.environ.pop("ONESHOT_WORKSPACE"))
_RESULTS = os.path.expanduser(os.environ.pop("ONESHOT_RESULTS"))
_PYTHONPATH = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
# Imported lazily by pytest or its plugins while reporting: bind them before the workspace joins.
_EAGER = ("pdb", "doctest", "unittest", "difflib", "pprint", "decimal", "fractions", "pygments", "pygments.lexers")


def _in_workspace(entry: str) -> bool:
    path = os.path.realpath(entry or os.getcwd())
    return path == _WORKSPACE or path.startswith(_WORKSPACE + os.sep)


import site  # noqa: E402 - with -S importing it runs nothing

# What site.main() does, without its start-up hooks: a venv's prefix, then its site-packages.
site.addsitepackages(site.venv(site.removeduppaths()) or set())
_held_back = [entry for entry in sys.path if _in_workspace(entry)]
sys.path[:] = [entry for entry in sys.path if not _in_workspace(entry)]

import _pytest  # noqa: E402
import pytest  # noqa: E402

for _module in (*(info.name for info in pkgutil.walk_packages(_pytest.__path__, "_pytest.")), *_EAGER):
    with contextlib.suppress(Exception):  # optional modules (pygments) or ones needing an extra
        importlib.import_module(_module)


class _JoinWorkspace:
    """Put the workspace on ``sys.path`` after plugins are loaded and before conftests are."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(self) -> None:
        sys.path[:0] = [os.getcwd(), *_PYTHONPATH]
        sys.path.extend(_held_back)


class _RecordResults:
    """Worst outcome of each test over setup, call and teardown, keyed by node id from the cwd.

    A test's outcome is recorded only once its teardown is reported: a run cut short after a
    passing setup (the terminal writer failing, the process killed) leaves the test ``missing``,
    never ``passed``. The hook runs first so the outcome is seen before anything else may fail."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.running: dict[str, str] = {}
        self.collection_errors: list[str] = []
        self.rootdir = os.getcwd()

    def pytest_configure(self, config: pytest.Config) -> None:
        self.rootdir = str(config.rootpath)

    def _test_id(self, nodeid: str) -> str:
        path, sep, rest = nodeid.partition("::")
        relative = os.path.relpath(os.path.join(self.rootdir, path), os.getcwd()).replace(os.sep, "/")
        return relative + sep + rest

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(self._test_id(report.nodeid))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.passed:
            status = "passed"
        elif report.skipped:
            status = "skipped"
        else:
            status = "failed" if report.when == "call" else "error"
        test_id = self._test_id(report.nodeid)
        previous = self.running.get(test_id)
        if previous is None or _SEVERITY[status] > _SEVERITY[previous]:
            self.running[test_id] = status
        if report.when == "teardown":
            worst = self.running.pop(test_id)
            recorded = self.statuses.get(test_id)
            if recorded is None or _SEVERITY[worst] > _SEVERITY[recorded]:
                self.statuses[test_id] = worst

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        data = {"exitstatus": int(exitstatus), "statuses": self.statuses, "collection_errors": self.collection_errors}
        os.makedirs(os.path.dirname(_RESULTS), exist_ok=True)
        with open(_RESULTS, "w", encoding="utf-8") as handle:
            json.dump(data, handle)


sys.exit(pytest.main(sys.argv[1:], plugins=[_JoinWorkspace(), _RecordResults()]))
