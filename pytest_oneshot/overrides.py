"""Overrides: a file that changes a task's definition for a run, applied to a copy, never to the task dir.

One format, JSON or TOML, given per run (``--oneshot-overrides FILE``) or next to a task
(``overrides.json`` / ``overrides.toml``; the task's own first, then the run's)::

    {
      "instructions": "replaces lm.instructions",
      "remove_paths": ["docs/**", "*.log"],          # globs of repo paths, removed from the start commit
      "inject_files": [
        {"path": "src/hint.txt", "content": "..."},                     # into the start commit (target "repo")
        {"path": "~/.config/tool.toml", "source": "tool.toml", "target": "sandbox"}  # agent's sandbox only
      ],
      "env": {"FEATURE_FLAG": "1"},                  # for the agent's process
      "repo": {"git_url": "file:///mirror/x.git", "branch": "main", "start_commit_sha": "<sha>"},
      "evaluation": {"mode": "replace" | "extend", "rubrics": [...], "test_scripts": [...], "tests": {...}},
      "limits": {"agent_timeout_sec": 900}
    }

Overrides change what the task *is*, never how the agent's change is scored: repo edits become a
commit on top of the start commit (both sandboxes start from it), sandbox files reach the agent's
sandbox only, and the hidden tests are still written last into the fresh scoring sandbox. So an
injected file can neither show the agent a hidden file (a ``source`` inside the task's hidden paths
is refused) nor stand in for a hidden test. OneShot's two historical formats (run_codex_box.sh's and
the spec_bench guide's) are read with a DeprecationWarning that says how to convert them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_oneshot.errors import TaskFormatError, describe, validation_error
from pytest_oneshot.secretscan import redact
from pytest_oneshot.task import (
    Rubric,
    Task,
    TaskOverrides,
    TaskSpec,
    TestScript,
    check_task,
)
from pytest_oneshot.task_tests import TestMode, TestsSpec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AFTER = " (in the task as overridden)"


def _relative(value: str, what: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or ".git" in path.parts:
        raise ValueError(f"{what} must be a relative path inside the repo, not in .git (got {value!r})")
    return value


class InjectFile(_Model):
    """A file put into the repo's start commit (``repo``) or the agent's sandbox only (``sandbox``)."""

    path: str
    content: str | None = None
    source: str | None = Field(None, description="file to copy, relative to the overrides file")
    target: Literal["repo", "sandbox"] = "repo"
    executable: bool = False

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        if value.startswith("~/") or value.startswith("/"):
            if ".." in PurePosixPath(value).parts:
                raise ValueError(f"must not contain '..' (got {value!r})")
            return value
        return _relative(value, "path")


class RepoOverride(_Model):
    """Replaces the task's repo source; a ``git_url`` drops the task's bundle (the repo is fetched from it)."""

    git_url: str | None = None
    branch: str | None = None
    start_commit_sha: str | None = None
    end_commit_sha: str | None = None
    subdir: str | None = None
    sparse_checkout: list[str] | None = None


class TestsOverride(_Model):
    """A ``replace`` keeps how the task's tests run (``mode``, ``command``, ``report``) unless given here."""

    __test__ = False
    mode: TestMode | None = None
    command: str | None = None
    report: str | None = None
    fail_to_pass: list[str] | None = None
    pass_to_pass: list[str] | None = None
    rubric_id: str | None = None
    setup: list[str] | None = None
    infrastructure: list[str] | None = None


class EvaluationOverride(_Model):
    """``replace`` (the default, as in OneShot) swaps rubrics, test scripts and tests for these; ``extend``
    adds them (a rubric id or test script path already there is replaced, test ids are appended)."""

    mode: Literal["replace", "extend"] = "replace"
    rubrics: list[Rubric] = Field(default_factory=list)
    test_scripts: list[TestScript] = Field(default_factory=list)
    tests: TestsOverride | None = None


class LimitsOverride(_Model):
    agent_timeout_sec: float | None = Field(None, gt=0)
    tests_timeout_sec: float | None = Field(None, gt=0)
    token_limit: int | None = Field(None, gt=0)


class Overrides(_Model):
    instructions: str | None = Field(None, min_length=1)
    remove_paths: list[str] = Field(default_factory=list)
    inject_files: list[InjectFile] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    repo: RepoOverride | None = None
    evaluation: EvaluationOverride | None = None
    limits: LimitsOverride | None = None

    @field_validator("remove_paths")
    @classmethod
    def _relative_globs(cls, value: list[str]) -> list[str]:
        return [_relative(pattern, "each pattern") for pattern in value]

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name) or name.startswith("ONESHOT_"):
                raise ValueError(f"{name!r}: must be a variable name, not one of the harness's ONESHOT_*")
        return value


@dataclass(frozen=True)
class OverridesFile:
    """One overrides file, read and validated."""

    path: Path
    overrides: Overrides


def load_overrides(path: Path) -> OverridesFile:
    """Read ``path`` (JSON, or TOML by its ``.toml`` suffix), mapping OneShot's legacy formats.

    Raises:
        TaskFormatError: naming the file and the key at fault (one line).
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise TaskFormatError(file, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFormatError(file, None, f"cannot be read: {exc}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TaskFormatError(file, None, f"not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(raw, dict):
        raise TaskFormatError(file, None, f"must hold an object (got {type(raw).__name__})")
    if _LEGACY_KEYS & raw.keys():
        raw = _convert_legacy(file, raw)
    try:
        return OverridesFile(path, Overrides.model_validate(raw))
    except ValidationError as exc:
        where, problem = describe(exc.errors()[0])
        if exc.errors()[0].get("type") == "extra_forbidden":
            problem = "unknown key (known: see Overrides in README)"
        raise TaskFormatError(file, where, problem) from None


# -- OneShot's two historical formats -------------------------------------------------------------------

_LEGACY_RENAMES = {
    "prompt": "instructions",
    "lm_instructions": "instructions",
    "remove_repo_paths": "remove_paths",
    "environment_variables": "env",
}
_LEGACY_KEYS = {*_LEGACY_RENAMES, "overlay_files", "overlay_repo_files", "rubrics", "test_scripts"} | {
    "openai",
    "model_provider",
}


def convert_legacy(raw: Mapping[str, Any], file: str = "overrides") -> tuple[dict[str, Any], list[str]]:
    """OneShot's overrides (run_codex_box.sh's or the spec_bench guide's) in today's format, and the renames.

    Raises:
        TaskFormatError: for keys that are run settings now (``openai``, ``model_provider``) or mixed formats.
    """
    for key in ("openai", "model_provider"):
        if key in raw:
            raise TaskFormatError(
                file, key, "OneShot's model settings are run options now: use --oneshot-model / --oneshot-base-url"
            )
    mixed = sorted({"instructions", "env", "remove_paths", "limits"} & raw.keys())
    if mixed:
        raise TaskFormatError(file, mixed[0], "mixes today's keys with OneShot's legacy ones; use one format")
    new: dict[str, Any] = {}
    notes: list[str] = []
    for old, key in _LEGACY_RENAMES.items():
        if old in raw:
            new[key] = raw[old]
            notes.append(f"{old} -> {key}")
    files = list(raw.get("inject_files") or [])
    for old, target, prefix in (("overlay_repo_files", "repo", ""), ("overlay_files", "sandbox", "~/")):
        for path, content in dict(raw.get(old) or {}).items():
            if old == "overlay_files" and path == "LM_INSTRUCTIONS.md":
                new.setdefault("instructions", content)
            else:
                files.append({"path": prefix + path, "content": content, "target": target})
        if old in raw:
            notes.append(f"{old} {{path: content}} -> inject_files [{{path, content, target: {target!r}}}]")
    if files:
        new["inject_files"] = files
    evaluation = dict(raw.get("evaluation") or {})
    for key in ("rubrics", "test_scripts"):
        if key in raw:
            evaluation[key] = raw[key]
            notes.append(f"{key} -> evaluation.{key}")
    if evaluation:
        new["evaluation"] = {"mode": "replace", **evaluation}
    if "repo" in raw:
        new["repo"] = raw["repo"]
    return new, notes


def _convert_legacy(file: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    new, notes = convert_legacy(raw, file)
    warnings.warn(
        DeprecationWarning(
            f"{file}: OneShot's overrides format is deprecated; rename {', '.join(notes)} "
            f"(`oneshot overrides convert {file}` prints the converted file)"
        ),
        stacklevel=3,
    )
    return new


# -- applying -------------------------------------------------------------------------------------------


def apply_overrides(task: Task, file: OverridesFile) -> Task:
    """A copy of ``task`` with ``file`` applied (the task directory is only read).

    Raises:
        TaskFormatError: naming the overrides file and the field, when the overridden task is invalid.
    """
    overrides, where = file.overrides, str(file.path)
    data = task.spec.model_dump()
    if overrides.instructions is not None:
        data["lm"]["instructions"] = overrides.instructions
    if overrides.repo is not None:
        repo = overrides.repo.model_dump(exclude_none=True)
        data["repo"].update(repo)
        if "git_url" in repo:
            data["repo"]["bundle"] = None
    if overrides.evaluation is not None:
        _apply_evaluation(data, overrides.evaluation)
    if overrides.limits is not None:
        data["limits"].update(overrides.limits.model_dump(exclude_none=True))
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_error(where, exc, _AFTER) from None
    repo_files, sandbox_files, described = _read_files(task, file)
    before = task.overrides or TaskOverrides()
    record = {
        "source": where,
        **overrides.model_dump(exclude_none=True, exclude={"inject_files", "env", "evaluation"}),
        "inject_files": described,
        "env": redact(overrides.env),
        **({"evaluation": _describe_evaluation(overrides)} if overrides.evaluation else {}),
    }
    combined = TaskOverrides(
        remove_paths=(*before.remove_paths, *overrides.remove_paths),
        repo_files=_merge(before.repo_files, repo_files),
        sandbox_files=_merge(before.sandbox_files, sandbox_files),
        env={**before.env, **overrides.env},
        records=(*before.records, {key: value for key, value in record.items() if value not in ([], {}, None)}),
    )
    overridden = replace(task, spec=spec, overrides=combined)
    check_task(overridden, where, _AFTER)
    return overridden


def _apply_evaluation(data: dict[str, Any], evaluation: EvaluationOverride) -> None:
    given = evaluation.model_dump(exclude_none=True)
    tests = given.get("tests", {})
    if evaluation.mode == "replace":
        data["evaluation"] = {"rubrics": given["rubrics"], "test_scripts": given["test_scripts"]}
        how = ("mode", "command", "report")  # a new mode brings its own command and report
        runs_as = {} if "mode" in tests else {key: data["tests"][key] for key in how if data["tests"].get(key)}
        data["tests"] = TestsSpec.model_validate({**runs_as, **tests}).model_dump()
        return
    for key, identity in (("rubrics", "id"), ("test_scripts", "path")):
        merged = {item[identity]: item for item in data["evaluation"][key]}
        merged.update({item[identity]: item for item in given[key]})
        data["evaluation"][key] = list(merged.values())
    for key, value in tests.items():
        if key in ("fail_to_pass", "pass_to_pass"):
            data["tests"][key] = list(dict.fromkeys([*data["tests"][key], *value]))
        else:
            data["tests"][key] = value


def _describe_evaluation(overrides: Overrides) -> dict[str, Any]:
    """The evaluation override for records: test scripts by digest, not content (they are hidden tests)."""
    assert overrides.evaluation is not None
    described = overrides.evaluation.model_dump(exclude_none=True)
    described["test_scripts"] = [
        {"path": script.path, "rubric_id": script.rubric_id, **_digest(script.content.encode())}
        for script in overrides.evaluation.test_scripts
    ]
    return described


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _read_files(
    task: Task, file: OverridesFile
) -> tuple[dict[str, tuple[bytes, bool]], dict[str, tuple[bytes, bool]], list[dict[str, Any]]]:
    """(repo files, sandbox files, their description for records); a ``source`` is read relative to the file."""
    repo: dict[str, tuple[bytes, bool]] = {}
    sandbox: dict[str, tuple[bytes, bool]] = {}
    described: list[dict[str, Any]] = []
    hidden = [path.resolve() for path in task.paths.hidden]
    for index, inject in enumerate(file.overrides.inject_files):
        where = f"inject_files[{index}]"
        if (inject.content is None) == (inject.source is None):
            raise TaskFormatError(str(file.path), where, "give exactly one of content or source")
        if inject.target == "repo" and inject.path.startswith(("~/", "/")):
            raise TaskFormatError(str(file.path), f"{where}.path", "a repo file needs a relative path")
        if inject.target == "sandbox" and not inject.path.startswith(("~/", "/")):
            raise TaskFormatError(str(file.path), f"{where}.path", "a sandbox file needs ~/path or /absolute/path")
        if inject.source is not None:
            source = (file.path.parent / inject.source).resolve()
            if any(source == path or path in source.parents for path in hidden):
                raise TaskFormatError(
                    str(file.path), f"{where}.source", f"{source} is one of the task's hidden files: never the agent's"
                )
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise TaskFormatError(str(file.path), f"{where}.source", f"cannot be read: {exc}") from None
        else:
            assert inject.content is not None
            data = inject.content.encode("utf-8")
        (repo if inject.target == "repo" else sandbox)[inject.path] = (data, inject.executable)
        described.append({"path": inject.path, "target": inject.target, **_digest(data)})
    return repo, sandbox, described


def _merge(
    before: tuple[tuple[str, bytes, bool], ...], after: Mapping[str, tuple[bytes, bool]]
) -> tuple[tuple[str, bytes, bool], ...]:
    merged = {path: (data, executable) for path, data, executable in before}
    merged.update(after)
    return tuple((path, data, executable) for path, (data, executable) in merged.items())


def task_overrides_file(task: Task) -> Path | None:
    """The task's own overrides file, if it has one.

    Raises:
        TaskFormatError: the task has both ``overrides.json`` and ``overrides.toml``.
    """
    found = [path for path in task.paths.overrides_files if path.is_file()]
    if len(found) > 1:
        raise TaskFormatError(str(found[1]), None, f"the task also has {found[0].name}: keep one overrides file")
    return found[0] if found else None


def overridden(task: Task, run_file: OverridesFile | None) -> Task:
    """``task`` with its own overrides file, then the run's, applied (the task itself when there is none)."""
    own = task_overrides_file(task)
    if own is not None:
        task = apply_overrides(task, load_overrides(own))
    if run_file is not None:
        task = apply_overrides(task, run_file)
    return task


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("overrides", help="Overrides files")
    commands = group.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser("convert", help="Print one of OneShot's overrides files in today's format")
    convert.add_argument("file", type=Path)
    convert.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    try:
        raw = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaskFormatError(str(args.file), None, f"cannot be read as JSON: {exc}") from None
    new, _ = convert_legacy(raw, str(args.file)) if isinstance(raw, dict) and _LEGACY_KEYS & raw.keys() else (raw, [])
    print(json.dumps(new, indent=2))
    return 0
