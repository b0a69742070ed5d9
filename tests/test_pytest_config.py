"""The start commit's pytest config, found as pytest itself finds it (checked against real pytest)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_oneshot.scoring.pytest_config import StartConfig, find_start_config
from pytest_oneshot.task_tests import parse_tests_command

LAYOUTS: dict[str, dict[str, str]] = {
    "pyproject-ini-options": {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"},
    "pytest-ini-beats-pyproject": {"pytest.ini": "[pytest]\n", "pyproject.toml": "[tool.pytest.ini_options]\n"},
    "tox-ini-in-test-dir": {"tests/tox.ini": "[pytest]\n", "pyproject.toml": "[tool.pytest.ini_options]\n"},
    "setup-cfg-without-section-is-skipped": {"setup.cfg": "[metadata]\nname = x\n", "tox.ini": "[tox]\n"},
    "setup-cfg-tool-pytest": {"setup.cfg": "[tool:pytest]\naddopts = -q\n"},
    "bare-pyproject-is-the-fallback": {"pyproject.toml": "[project]\nname = 'x'\n"},
    "setup-py-sets-rootdir": {"tests/setup.py": "", "tests/unit/.keep": ""},
    "nothing": {},
    "pytest-toml": {"pytest.toml": "[pytest]\n", "pytest.ini": "[pytest]\n"},
}


def _pytest_view(repo: Path, test_file: str) -> StartConfig:
    """rootdir and configfile as the installed pytest reports them for ``test_file``."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-p", "no:cacheprovider", "-o", "addopts=", test_file],
        cwd=repo, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    match = re.search(r"^rootdir: (\S+)(?:\nconfigfile: (\S+))?", out, re.M)
    assert match, out
    rootdir = Path(match.group(1)).relative_to(repo).as_posix()
    config = match.group(2)
    return StartConfig("" if rootdir == "." else rootdir, None if config is None else str(Path(rootdir, config)))


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_the_start_config_is_the_one_pytest_uses(tmp_path: Path, layout: dict[str, str]) -> None:
    test_file = "tests/unit/test_a.py"
    for path, content in {**layout, test_file: "def test_a():\n    pass\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    found = find_start_config(tmp_path, "", [test_file])
    expected = _pytest_view(tmp_path, test_file)
    assert found.rootdir == expected.rootdir
    assert found.config_file == (None if expected.config_file is None else expected.config_file.removeprefix("./"))


def test_a_subdir_task_searches_up_to_the_repo_top(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    assert find_start_config(tmp_path, "pkg", ["tests/test_a.py"]) == StartConfig("", "pyproject.toml")
    assert find_start_config(tmp_path, "pkg", ["tests/test_a.py"]).effective_file == "pyproject.toml"
    assert StartConfig("pkg", None).effective_file == "pkg/.oneshot-pytest.ini"


@pytest.mark.parametrize(
    ("command", "python", "args", "env"),
    [
        ("python -m pytest", "python", [], {}),
        ("python3.11 -m pytest -x -q", "python3.11", ["-x", "-q"], {}),
        (
            "PYTHONPATH=src LANG=C pytest --strict-markers",
            "python3",
            ["--strict-markers"],
            {"PYTHONPATH": "src", "LANG": "C"},
        ),
        ("/opt/venv/bin/python -m py.test", "/opt/venv/bin/python", [], {}),
    ],
)
def test_the_tests_command_is_taken_apart(command: str, python: str, args: list[str], env: dict[str, str]) -> None:
    parsed = parse_tests_command(command)
    assert (parsed.python, parsed.args, parsed.env) == (python, args, env)


@pytest.mark.parametrize("command", ["make test", "bash run_tests.sh", "python setup.py test", "npm test", "'unclosed"])
def test_a_command_that_is_not_pytest_is_refused(command: str) -> None:
    with pytest.raises(ValueError, match=r"must run pytest|cannot be parsed"):
        parse_tests_command(command)
