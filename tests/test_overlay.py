"""What of the agent's change reaches scoring: the test-infrastructure rules, one by one."""

from __future__ import annotations

import hashlib

import pytest

from pytest_oneshot.change import Change, Entry
from pytest_oneshot.scoring.overlay import default_infrastructure, scored_tree

FRESH = ["src/calc/__init__.py", "src/json_tools/__init__.py", "tests/__init__.py", "tests/test_calc.py", "docs/a.md"]


def _file(text: str) -> Entry:
    return Entry("file", hashlib.sha256(text.encode()).hexdigest(), data=text.encode())


def _reset_reason(path: str, deleted: bool = False, **kwargs: object) -> str | None:
    change = Change(files={} if deleted else {path: _file("x\n")}, deleted=(path,) if deleted else (), left_out={})
    tree = scored_tree(
        change,
        workdir="",
        infrastructure=default_infrastructure(["tests/test_calc.py"]),
        hidden_files={"tests/test_calc.py": b"def test_add(): ...\n"},
        config_file="pyproject.toml",
        graded_files=["tests/test_calc.py"],
        fresh_paths=FRESH,
        **kwargs,  # type: ignore[arg-type]
    )
    return tree.reset.get(path)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("tests/helpers.py", "test infrastructure"),
        ("tests/sub/conftest.py", "conftest.py"),
        ("src/conftest.py", "conftest.py"),
        ("src/sitecustomize.py", "start-up hook"),
        ("__init__.py", "a new __init__.py above the graded tests"),
        ("pyproject.toml", "pytest config"),
        ("tests/test_calc.py/x", "hidden file"),
        ("asyncio.py", "standard library's 'asyncio'"),
        ("src/json/__init__.py", "standard library's 'json'"),
        ("lib/tarfile.py", "standard library's 'tarfile'"),
    ],
)
def test_test_infrastructure_stays_as_at_the_start(path: str, why: str) -> None:
    reason = _reset_reason(path, import_roots=["lib"])
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "path", ["src/calc/__init__.py", "src/calc/json.py", "src/json_tools/new.py", "docs/a.md", "README.md"]
)
def test_the_agents_own_code_goes_through(path: str) -> None:
    assert _reset_reason(path) is None


def test_a_deletion_in_the_test_dir_is_undone_but_elsewhere_kept() -> None:
    assert _reset_reason("tests/__init__.py", deleted=True) is not None
    assert _reset_reason("docs/a.md", deleted=True) is None


def test_a_file_where_a_directory_was_removes_the_directory_first() -> None:
    change = Change(files={"docs": _file("now a file\n")}, deleted=("docs/a.md",), left_out={})
    tree = scored_tree(change, workdir="", infrastructure=[], hidden_files={}, config_file="pyproject.toml",
                       fresh_paths=FRESH)  # fmt: skip
    assert tree.remove[0] == "docs" and "docs" in tree.files


def test_default_infrastructure_is_the_highest_test_directory() -> None:
    assert default_infrastructure(["tests/unit/test_a.py", "src/pkg/test/test_b.py", "test_root.py"]) == [
        "src/pkg/test",
        "test_root.py",
        "tests",
    ]


def test_the_projects_own_init_above_the_tests_is_its_code() -> None:
    fresh = [*FRESH, "src/calc/tests/test_x.py"]
    files = {"src/calc/__init__.py": _file("fixed\n"), "src/__init__.py": _file("new\n")}
    tree = scored_tree(
        Change(files=files, deleted=(), left_out={}),
        workdir="",
        infrastructure=["src/calc/tests"],
        hidden_files={},
        config_file="pyproject.toml",
        graded_files=["src/calc/tests/test_x.py"],
        fresh_paths=fresh,
    )
    assert "src/calc/__init__.py" in tree.files and "src/__init__.py" in tree.reset
