"""What of the agent's change reaches scoring: its change to the files, minus test infrastructure.

The scored tree is a fresh workspace (start commit + environment setup) with the agent's change
applied, except the paths that decide how tests are collected, run or reported, which stay as
they were at the start (the change to them is listed in ``reset``), and the task's hidden files
written last. Test infrastructure is:

- every file under a directory holding graded tests (``tests.infrastructure`` overrides which:
  by default the highest ancestor directory of each graded test file named like a test
  directory -- ``tests/``, ``test/``, ``testing/``, ``src/pkg/tests/`` -- else only the file);
- every ``conftest.py``, and the interpreter's start-up hooks ``sitecustomize.py`` /
  ``usercustomize.py``, anywhere;
- a new ``__init__.py`` in a directory above a graded test (it would move pytest's package
  root, and with it which files pytest imports first; the project's own ones are its code);
- new top-level modules named like a standard-library module (``json.py``, ``asyncio/``) in a
  directory that joins ``sys.path`` (the repo, the workdir, ``src/``, the start config's
  ``pythonpath``): they would stand in for the real one under the tests;
- the pytest config file of the start commit (see :mod:`pytest_oneshot.scoring.pytest_config`;
  pytest mode only);
- the hidden files' paths, their parent directories and anything below them.

A file or symlink of the change where the fresh tree has a directory replaces that directory.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from pytest_oneshot.change import Change, Entry, parent_dirs

_TEST_DIR = re.compile(r"^(tests?|testing)$|^tests?_|_tests?$")
_ALWAYS_RESET = {
    "conftest.py": "conftest.py (test infrastructure)",
    "sitecustomize.py": "interpreter start-up hook",
    "usercustomize.py": "interpreter start-up hook",
}


def default_infrastructure(test_files: Iterable[str]) -> list[str]:
    """For each graded test file (workdir-relative), its highest test-named ancestor dir, else the file."""
    found = set()
    for file in test_files:
        path = PurePosixPath(file)
        dirs = [parent for parent in reversed(path.parents) if parent.parts]  # highest first
        found.add(next((str(d) for d in dirs if _TEST_DIR.search(d.name)), str(path)))
    return sorted(found)


@dataclass(frozen=True)
class ScoredTree:
    """How to turn a fresh workspace into the scored one (repo-relative paths)."""

    remove: tuple[str, ...]
    files: Mapping[str, Entry]
    reset: Mapping[str, str]
    """Paths the agent changed that stay as at the start, and why."""


def _under(path: PurePosixPath, roots: Iterable[PurePosixPath]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def file_entry(data: bytes) -> Entry:
    return Entry("file", hashlib.sha256(data).hexdigest(), data=data)


def _new_modules(path: PurePosixPath, roots: Iterable[PurePosixPath], fresh: Collection[str]) -> set[str]:
    """Top-level module names ``path`` would newly provide from the ``sys.path`` roots it lies under
    (a name the fresh tree already has there, file or package, is the project's own)."""
    names = set()
    for root in roots:
        if root in path.parents:
            first = path.relative_to(root).parts[0]
            if str(root / first) not in fresh:
                names.add(first.split(".", 1)[0])
    return names


def scored_tree(
    change: Change,
    *,
    workdir: str,
    infrastructure: Iterable[str],
    hidden_files: Mapping[str, bytes],
    config_file: str | None,
    graded_files: Iterable[str] = (),
    import_roots: Iterable[str] = (),
    fresh_paths: Collection[str] = (),
    extra_files: Mapping[str, bytes] | None = None,
) -> ScoredTree:
    """Apply the rules above. ``infrastructure``, ``hidden_files`` and ``graded_files`` are
    workdir-relative; ``config_file``, ``import_roots`` (beyond the repo, workdir and ``src/``),
    ``fresh_paths`` (the fresh tree's files) and ``extra_files`` (harness files written last) are
    repo-relative."""
    base = PurePosixPath(workdir)
    infra_roots = [base / path for path in infrastructure]
    hidden = {str(base / path): data for path, data in hidden_files.items()}
    hidden_paths = [PurePosixPath(path) for path in hidden]
    hidden_parents = {parent for path in hidden_paths for parent in path.parents}
    package_dirs = {parent for file in graded_files for parent in (base / file).parents}
    roots = {PurePosixPath(), base, PurePosixPath("src"), base / "src", *map(PurePosixPath, import_roots)}
    config = [PurePosixPath(config_file)] if config_file is not None else []  # None: no pytest runs (a metric)
    fresh_names = {*fresh_paths, *parent_dirs(fresh_paths)}

    def why_reset(name: str) -> str | None:
        path = PurePosixPath(name)
        if path.name in _ALWAYS_RESET:
            return _ALWAYS_RESET[path.name]
        if _under(path, hidden_paths) or path in hidden_parents:
            return "a hidden file of the task (or on its path)"
        if _under(path, infra_roots):
            return "test infrastructure (a directory holding graded tests)"
        if _under(path, config):
            return "the pytest config of the start commit"
        if path.name == "__init__.py" and path.parent in package_dirs and name not in fresh_paths:
            return "a new __init__.py above the graded tests (test infrastructure)"
        shadowed = sorted(_new_modules(path, roots, fresh_names) & sys.stdlib_module_names)
        if shadowed:
            return f"a new module shadowing the standard library's {shadowed[0]!r}"
        return None

    reset: dict[str, str] = {}
    for path in change.paths:
        reason = why_reset(path)
        if reason:
            reset[path] = reason
    files = {path: entry for path, entry in change.files.items() if path not in reset}
    files.update({path: file_entry(data) for path, data in hidden.items()})
    files.update({path: file_entry(data) for path, data in (extra_files or {}).items()})
    replaced_dirs = [path for path in files if path in fresh_names and path not in fresh_paths]  # was a directory
    remove = tuple([*replaced_dirs, *(path for path in change.deleted if path not in reset)])
    return ScoredTree(remove=remove, files=files, reset=reset)
