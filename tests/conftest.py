"""Shared fixtures: copies of the shipped tasks, a tiny task factory, a run-and-parse helper, and the
real codex and mitmdump binaries (skipped when missing, failed under ONESHOT_REQUIRE_CODEX/_MITMPROXY)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.manage import ProxyError, find_mitmdump, install_mitmproxy
from pytest_oneshot.agent.codex import find_codex
from pytest_oneshot.errors import OneshotError, SandboxUnavailableError
from pytest_oneshot.sandbox.dockerd import Engine, ensure_base_image, ensure_engine

pytest_plugins = ["pytester"]
collect_ignore = ["fixtures"]  # task dirs used as data, not as this suite's tests

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TASKS = REPO_ROOT / "tasks"
REFERENCE_TASKS = Path(__file__).resolve().parent / "fixtures" / "reference_tasks"  # copied from shared/


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repo snapshots go to a per-session cache, never the user's ~/.cache."""
    monkeypatch.setenv("ONESHOT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "oneshot-cache"))
    for name in ("AGENT", "SANDBOX", "MODEL", "RUNS_DIR", "TRACE", "PRICES"):
        monkeypatch.delenv(f"ONESHOT_{name}", raising=False)


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    try:
        return find_codex()
    except OneshotError as exc:
        if os.environ.get("ONESHOT_REQUIRE_CODEX"):
            pytest.fail(f"ONESHOT_REQUIRE_CODEX is set but {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine, started if needed; skipped only when none can run here (unless CI requires it)."""
    try:
        engine = ensure_engine()
        ensure_base_image(engine)
    except SandboxUnavailableError as exc:
        if os.environ.get("ONESHOT_REQUIRE_DOCKER"):
            pytest.fail(f"ONESHOT_REQUIRE_DOCKER is set but {exc}", pytrace=False)
        pytest.skip(str(exc))
    return engine


@pytest.fixture(scope="session")
def mitmdump() -> Path:
    """A real mitmdump: configured/PATH/managed venv, else installed into the managed venv."""
    try:
        return find_mitmdump()
    except ProxyError as not_found:
        try:
            return install_mitmproxy()
        except ProxyError as failed:
            reason = f"mitmproxy unavailable: {not_found}; and {failed}"
            if os.environ.get("ONESHOT_REQUIRE_MITMPROXY"):
                pytest.fail(f"ONESHOT_REQUIRE_MITMPROXY is set but {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture
def reference_tasks() -> list[Path]:
    """The six created-form OneShot tasks rebuilt from the original's history (format fixtures)."""
    return sorted(path for path in REFERENCE_TASKS.iterdir() if (path / "tb_meta.json").is_file())


@pytest.fixture
def shipped_tasks(pytester: pytest.Pytester) -> Path:
    """A private copy of the shipped example tasks inside the pytester dir."""
    dest = pytester.path / "tasks"
    shutil.copytree(SHIPPED_TASKS, dest)
    return dest


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _build_task(
    src: Path, dest: Path, files: dict[str, str], module: str, hidden_test: str, overrides: dict[str, Any],
    git_env: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """The "fix add" task in ``dest``: ``files`` committed in ``src`` as the start (``module``'s
    ``add`` subtracts), the fix (``a + b``) as ``diff.patch``, ``hidden_test`` as the hidden
    ``tests/test_calc.py``; ``overrides`` replace tb_meta.json keys (dicts are merged)."""
    src.mkdir(parents=True)
    _git(src, "init", "-q", "-b", "main", env=git_env)
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    _git(src, "add", "-A", env=git_env)
    _git(src, "commit", "-qm", "start", env=git_env)
    start = _git(src, "rev-parse", "HEAD", env=git_env)
    (src / module).write_text((src / module).read_text().replace("a - b", "a + b"))
    diff = _git(src, "diff", env=git_env) + "\n"
    dest.mkdir(parents=True)
    _git(src, "bundle", "create", str(dest / "repo.bundle"), "main", env=git_env)
    (dest / "diff.patch").write_text(diff)
    (dest / "notes.md").write_text("the fix: use + instead of -\n")
    (dest / "tests").mkdir()
    (dest / "tests" / "test_calc.py").write_text(hidden_test)
    meta: dict[str, Any] = {
        "task_id": dest.name,
        "metadata": {"title": "Fix add", "tags": ["bugfix"]},
        "repo": {"bundle": "repo.bundle", "branch": "main", "start_commit_sha": start},
        "lm": {"instructions": "calc.add subtracts instead of adding; fix it."},
        "evaluation": {"rubrics": [{"id": "correctness", "weight": 0.7}, {"id": "quality", "weight": 0.3}]},
        "tests": {
            "fail_to_pass": ["tests/test_calc.py::test_add"],
            "pass_to_pass": ["tests/test_calc.py::test_zero"],
            "rubric_id": "correctness",
        },
        "limits": {"agent_timeout_sec": 60, "tests_timeout_sec": 60},
    }
    for key, value in overrides.items():
        meta[key] = {**meta.get(key, {}), **value} if isinstance(value, dict) else value
    (dest / "tb_meta.json").write_text(json.dumps(meta, indent=2))
    return dest


@pytest.fixture
def make_task(tmp_path: Path) -> Callable[..., Path]:
    """Build a small bundle-backed task: ``add()`` subtracts; the fix makes it add."""

    def make(dest: Path, *, files: dict[str, str] | None = None, **overrides: Any) -> Path:
        """``files``: more repo files at the start commit; ``overrides``: tb_meta.json keys (dicts merged)."""
        start_files = {
            **(files or {}),
            "calc/__init__.py": "def add(a, b):\n    return a - b\n",
            "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n",
        }
        hidden = "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\ndef test_add():\n"
        hidden += "    assert add(2, 3) == 5\n"
        return _build_task(tmp_path / f"src-{dest.name}", dest, start_files, "calc/__init__.py", hidden, overrides)

    return make


# A repository as real projects lay it out: src layout, pytest configured in pyproject.toml, a
# tracked tests/conftest.py and a test helper module the hidden test imports.
_REAL_REPO = {
    ".gitignore": "__pycache__/\n*.egg-info/\n.pytest_cache/\nbuild/\ndist/\n",
    "README.md": "# calc\n\nA tiny calculator.\n",
    "pyproject.toml": (
        '[project]\nname = "calc"\nversion = "0.1.0"\nrequires-python = ">=3.8"\n\n'
        '[tool.pytest.ini_options]\npythonpath = ["src", "tests"]\ntestpaths = ["tests"]\n'
    ),  # the pytest table comes last: an attack may append keys to it
    "src/calc/__init__.py": '"""A tiny calculator."""\n\n\ndef add(a, b):\n    """Return a + b."""\n    return a - b\n',
    "tests/conftest.py": (
        "import pytest\n\n\n@pytest.fixture\ndef sums():\n"
        '    """(a, b, a + b) triples."""\n    return [(2, 3, 5), (-1, 1, 0), (0, 7, 7)]\n'
    ),
    "tests/helpers.py": (
        '"""Assertions shared by the test modules."""\n\n\ndef assert_sum(func, a, b, expected):\n'
        "    result = func(a, b)\n"
        '    assert result == expected, f"{func.__name__}({a!r}, {b!r}) == {result!r}, expected {expected!r}"\n'
    ),
    "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n",
}
_REAL_HIDDEN_TEST = (
    "from calc import add\nfrom helpers import assert_sum\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\n"
    "def test_add(sums):\n    for a, b, expected in sums:\n        assert_sum(add, a, b, expected)\n"
)
_FIXED_DATES = {"GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}


@pytest.fixture
def make_real_task(tmp_path: Path) -> Callable[..., Path]:
    """Build a bundle-backed task over a realistic repo (``_REAL_REPO``): ``calc.add`` subtracts.

    The hidden ``tests/test_calc.py`` imports ``helpers`` and uses the ``sums`` fixture of the
    tracked ``tests/conftest.py``; commit dates are fixed, so docker reuses the task's image.
    """

    def make(dest: Path, repo_files: dict[str, str | None] | None = None, **overrides: Any) -> Path:
        """``repo_files``: more files of the start commit (path -> text, None: leave that file out)."""
        files = {rel: text for rel, text in {**_REAL_REPO, **(repo_files or {})}.items() if text is not None}
        src = tmp_path / f"src-{dest.name}"
        return _build_task(src, dest, files, "src/calc/__init__.py", _REAL_HIDDEN_TEST, overrides, _FIXED_DATES)

    return make


_CANARY = "CANARY" + "-7f3a9c"  # split so no source file ever matches the search


@pytest.fixture
def answer_search(make_task: Callable[..., Path], run_and_parse: Callable[..., ParsedRun]) -> Callable[..., list[str]]:
    """Plant a canary in a task's answer (diff, notes, hidden tests), let a command agent search
    the whole sandbox for it and for the answer files, and return what it found."""

    def search(tasks_dir: Path, *args: str) -> list[str]:
        task = make_task(tasks_dir / "fix-add")
        (task / "notes.md").write_text(f"notes {_CANARY}\n")
        (task / "diff.patch").write_text((task / "diff.patch").read_text().replace("a + b", f"a + b  # {_CANARY}"))
        hidden = task / "tests" / "test_calc.py"
        hidden.write_text(hidden.read_text() + f"\n# {_CANARY}\n")
        command = (
            "echo search-start; "
            "find / -xdev \\( -name diff.patch -o -name notes.md -o -name tb_meta.json -o -name repo.bundle \\) "
            "-print 2>/dev/null; "
            f"grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=usr {_CANARY[:11]} / "
            "2>/dev/null; git log --all --format=%H | wc -l; echo search-end"
        )
        run = run_and_parse(str(tasks_dir), "--oneshot-agent=command", f"--oneshot-agent-cmd={command}", *args)
        log = (Path(run.items()["fix-add[command-r0]"]["run_dir"]) / "agent" / "agent.log").read_text()
        return log.split("search-start\n", 1)[1].split("search-end", 1)[0].split()

    return search


@dataclass
class ParsedRun:
    result: pytest.RunResult
    report: dict[str, Any]
    junit: ET.Element

    def items(self) -> dict[str, dict[str, Any]]:
        return {item["item_id"]: item for item in self.report.get("items", [])}

    def diff(self, item_id: str) -> list[str]:
        """The item's ``diff.patch`` without ``index`` lines (``git diff --binary`` writes blob ids there)."""
        diff = (Path(self.items()[item_id]["run_dir"]) / "diff.patch").read_text()
        return [line for line in diff.strip().splitlines() if not line.startswith("index ")]

    def properties(self, name_contains: str) -> dict[str, str]:
        for case in self.junit.iter("testcase"):
            if name_contains in case.get("name", ""):
                return {prop.get("name", ""): prop.get("value", "") for prop in case.iter("property")}
        raise AssertionError(f"no testcase named like {name_contains!r}")


@pytest.fixture
def run_and_parse(pytester: pytest.Pytester) -> Callable[..., ParsedRun]:
    """Run pytest in a subprocess (trials spawn sandboxes) and parse its JSON + JUnit reports."""

    def run(*args: str, timeout: float = 600) -> ParsedRun:
        json_path, xml_path = pytester.path / "report.json", pytester.path / "junit.xml"
        result = pytester.runpytest_subprocess(
            *args, f"--oneshot-json={json_path}", f"--junitxml={xml_path}", "-o", "junit_family=xunit1", timeout=timeout
        )
        report = json.loads(json_path.read_text()) if json_path.exists() else {}
        junit = ET.parse(xml_path).getroot()
        task_cases = [case for case in junit.iter("testcase") if "[" in case.get("name", "")]
        assert len(task_cases) == len(report.get("items", [])), "every task testcase in JUnit has a JSON item"
        return ParsedRun(result, report, junit)

    return run
