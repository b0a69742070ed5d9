"""How the hidden tests are run: pytest's configuration as it was at the start commit, and the command.

The agent's change must not alter how the tests are collected, run or reported, so pytest never
searches the scored tree for its configuration: the harness finds the config file pytest would
have used *at the start commit* (the same search pytest does, on the repo snapshot), puts that
file back at its own path in the scored tree, and names it with ``-c`` and an explicit
``--rootdir``. Relative settings (``pythonpath``, ``testpaths``) then resolve exactly as upstream.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# pytest's own search order (``_pytest/config/findpaths.py``; pytest.toml since pytest 9).
CONFIG_NAMES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
EMPTY_CONFIG_NAME = ".oneshot-pytest.ini"
"""Written at the rootdir when the start commit has no pytest config, so none the agent adds is read."""


@dataclass(frozen=True)
class StartConfig:
    """Where pytest's configuration was at the start commit (repo-relative POSIX paths)."""

    rootdir: str
    """pytest's rootdir ('' = the repo's top directory)."""
    config_file: str | None
    """The config file pytest used, or None (then :data:`EMPTY_CONFIG_NAME` at the rootdir is used)."""
    pythonpath: tuple[str, ...] = ()
    """Its ``pythonpath`` setting: repo-relative directories pytest puts on ``sys.path``."""

    @property
    def effective_file(self) -> str:
        return self.config_file or str(PurePosixPath(self.rootdir, EMPTY_CONFIG_NAME))


def _has_pytest_config(path: Path) -> bool:
    """Whether pytest would take ``path`` as its config file (pytest's ``load_config_dict_from_file``)."""
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if path.name in ("pytest.toml", ".pytest.toml"):
                return True
            return bool(data.get("tool", {}).get("pytest"))
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        return path.name in ("pytest.ini", ".pytest.ini")  # pytest would stop here too, with an error
    if path.suffix == ".ini":
        return parser.has_section("pytest") or path.name in ("pytest.ini", ".pytest.ini")
    return path.suffix == ".cfg" and parser.has_section("tool:pytest")


def _upwards(relative: PurePosixPath) -> list[PurePosixPath]:
    """``relative`` and each of its parents up to the repo's top directory."""
    return [relative, *relative.parents] if relative.parts else [relative]


def find_start_config(snapshot: Path, workdir: str, test_files: list[str]) -> StartConfig:
    """The rootdir and config file pytest would pick at the start commit for ``test_files``.

    ``snapshot`` is the repo checked out at the start commit; ``workdir`` (repo-relative) is where
    pytest runs; ``test_files`` are relative to it. Follows pytest's documented search: the first
    config file with a pytest section from the tests' common ancestor upwards, else the nearest
    ``pyproject.toml``, else the nearest ``setup.py``'s directory, else the common ancestor of the
    invocation dir and the tests.
    """
    base = PurePosixPath(workdir) if workdir else PurePosixPath()
    dirs = {(base / file).parent for file in test_files} or {base}
    ancestor = PurePosixPath(os.path.commonpath([str(path) for path in dirs])) if dirs else base
    if str(ancestor) == ".":
        ancestor = PurePosixPath()
    nearest_pyproject: PurePosixPath | None = None
    for directory in _upwards(ancestor):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if not (snapshot / candidate).is_file():
                continue
            if name == "pyproject.toml" and nearest_pyproject is None:
                nearest_pyproject = candidate
            if _has_pytest_config(snapshot / candidate):
                return StartConfig(_posix(directory), _posix(candidate), _pythonpath(snapshot, candidate))
    if nearest_pyproject is not None:
        return StartConfig(_posix(nearest_pyproject.parent), _posix(nearest_pyproject))
    for directory in _upwards(ancestor):
        if (snapshot / directory / "setup.py").is_file():
            return StartConfig(_posix(directory), None)
    common = PurePosixPath(os.path.commonpath([str(base), str(ancestor)])) if base.parts else PurePosixPath()
    return StartConfig(_posix(common), None)


def _pythonpath(snapshot: Path, config: PurePosixPath) -> tuple[str, ...]:
    """The ``pythonpath`` entries of a config file, repo-relative (best effort: unreadable gives none)."""
    path = snapshot / config
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            table = (
                data.get("pytest", {})
                if path.name in ("pytest.toml", ".pytest.toml")
                else data.get("tool", {}).get("pytest", {})
            )
            value = table.get("ini_options", table).get("pythonpath", [])
        else:
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            parser.read_string(path.read_text(encoding="utf-8"))
            section = "tool:pytest" if path.suffix == ".cfg" else "pytest"
            value = parser.get(section, "pythonpath", fallback="")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error, AttributeError):
        return ()
    entries = value.split() if isinstance(value, str) else [str(entry) for entry in value]
    return tuple(_posix(PurePosixPath(os.path.normpath(config.parent / entry))) for entry in entries)


def _posix(path: PurePosixPath) -> str:
    return "" if str(path) == "." else path.as_posix()
