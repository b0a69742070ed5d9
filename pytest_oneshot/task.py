"""The task: ``tb_meta.json`` read in OneShot's created, prepared and legacy forms, plus our fields.

A task directory looks like this (only ``tb_meta.json`` is required)::

    <task>/
      tb_meta.json        the spec (TaskSpec below)
      repo.bundle         git bundle with history up to the start commit only (optional)
      diff.patch          reference solution          -- hidden from the agent
      notes.md            the author's notes          -- hidden from the agent
      hidden/             hidden files: a tree overlaid on the workdir before scoring, at any
                          path (hidden/src/pkg/test/test_x.py -> <workdir>/src/pkg/test/test_x.py)
      tests/              hidden tests, the older layout: tests/test_x.py -> <workdir>/tests/test_x.py
      LM_INSTRUCTIONS.md  OneShot's prompt file, used when lm.instructions is empty
      cassettes/          recorded model trajectories for replay (optional)

Everything the agent may see is the repo at its start commit and the instructions; the
hidden paths are named once in :class:`TaskPaths` so "never visible" is easy to check.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_oneshot.errors import TaskFormatError, validation_error
from pytest_oneshot.files import file_digest
from pytest_oneshot.task_tests import MetricSpec, TestsSpec

META_FILE = "tb_meta.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Model):
    title: str = ""
    tags: list[str] = Field(default_factory=list)
    summary: str = ""
    created_at: str = ""


_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def _is_branch_name(name: str) -> bool:
    """git's ref-name rules (``git check-ref-format --branch``), checked at collection, not at clone time."""
    if name in ("@", "HEAD") or name.startswith(("-", "/")) or name.endswith(("/", ".")) or _BAD_REF_CHARS.search(name):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))


class RepoSpec(_Model):
    """Where the repo comes from and which commit the agent starts at."""

    bundle: str | None = Field(None, description="git bundle inside the task dir (history up to start only)")
    git_url: str = Field("", description="URL or local path, fetched at start_commit_sha without later history")
    branch: str = ""
    start_commit_sha: str = Field(..., min_length=1)
    end_commit_sha: str = Field("", description="the author's end commit; never fetched for the agent")
    subdir: str = Field("", description="directory inside the repo where the agent and tests run")
    sparse_checkout: list[str] = Field(default_factory=list)

    @field_validator("branch")
    @classmethod
    def _valid_branch(cls, value: str) -> str:
        if value and not _is_branch_name(value):
            raise ValueError(f"not a valid git branch name (got {value!r}; see `git check-ref-format --branch`)")
        return value

    @field_validator("subdir")
    @classmethod
    def _relative_subdir(cls, value: str) -> str:
        if value and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"must be a relative path inside the repo (got {value!r})")
        return value.strip("/")


class LmSpec(_Model):
    instructions: str = ""


class Rubric(_Model):
    id: str = Field(..., min_length=1)
    criterion: str = ""
    weight: float = Field(1.0, gt=0)
    evaluation_criteria: list[str] = Field(default_factory=list)

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number > 0 (got {value})")
        return value


class TestScript(_Model):
    """OneShot's inline hidden test: ``content`` is written to ``path`` before scoring."""

    __test__ = False
    path: str = Field(..., min_length=1)
    rubric_id: str
    content: str

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(f"must be a relative path inside the repo (got {value!r})")
        return value


class Evaluation(_Model):
    rubrics: list[Rubric] = Field(default_factory=list)
    test_scripts: list[TestScript] = Field(default_factory=list)


_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


class EnvironmentSpec(_Model):
    system_packages: list[str] = Field(default_factory=list, description="Debian packages the task needs")
    pip: list[str] = Field(
        default_factory=list, description="arguments of one `pip install` run from the repo root into a venv"
    )
    setup: list[str] = Field(default_factory=list, description="commands run once before the agent (deps)")
    network: Literal["none", "loopback"] = "none"
    cpus: float = Field(1.0, gt=0)
    memory_mb: int = Field(2048, gt=0)
    dockerfile: str | None = Field(None, description="task-relative Dockerfile for the docker sandbox")

    @field_validator("system_packages")
    @classmethod
    def _debian_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DEBIAN_PACKAGE.fullmatch(name):
                raise ValueError(f"{name!r} is not a Debian package name (lowercase letters, digits, + - .)")
        return value

    @field_validator("pip")
    @classmethod
    def _plain_arguments(cls, value: list[str]) -> list[str]:
        for arg in value:
            if not arg.strip() or any(char in arg for char in "\0\n\r"):
                raise ValueError(f"{arg!r}: each item is one `pip install` argument (no empty items or newlines)")
        return value


class LimitsSpec(_Model):
    agent_timeout_sec: float = Field(600.0, gt=0)
    tests_timeout_sec: float = Field(300.0, gt=0)
    token_limit: int | None = Field(None, gt=0)


class Sensitivity(_Model):
    level: Literal["safe", "sensitive", "unknown"] = "unknown"


class CaptureValidation(_Model):
    """How capture checked its tests (fail at the start, pass at the end; mcp_server/validate.py): never graded."""

    status: Literal["validated", "no_tests", "no_fail_to_pass", "failing_at_end", "error"]
    message: str = ""
    test_files: list[str] = Field(default_factory=list)
    python: str = ""
    start_outcomes: dict[str, str] = Field(default_factory=dict)
    end_outcomes: dict[str, str] = Field(default_factory=dict)


class TaskSpec(_Model):
    """A ``tb_meta.json``: OneShot's fields plus ours (tests, environment, limits)."""

    schema_version: str = "oneshot/1"
    task_id: str = Field(..., min_length=1)
    metadata: Metadata = Field(default_factory=Metadata)
    repo: RepoSpec
    lm: LmSpec = Field(default_factory=LmSpec)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    tests: TestsSpec = Field(default_factory=TestsSpec)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    sensitivity: Sensitivity = Field(default_factory=Sensitivity)
    metric: MetricSpec | None = Field(None, description="research-bench: scored by a metric's improvement")
    validation: CaptureValidation | None = Field(None, description="written by task capture")

    @model_validator(mode="before")
    @classmethod
    def _map_oneshot_forms(cls, data: Any) -> Any:
        """Map OneShot's legacy keys onto ours so one model reads every form."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "id" in data and "task_id" not in data:
            data["task_id"] = data.pop("id")
        # A non-object where an object belongs is left as is, for pydantic to report at its field.
        if isinstance(data.get("metadata") or {}, dict):
            metadata = dict(data.get("metadata") or {})
            for key in ("title", "tags", "created_at"):
                if key in data:
                    metadata.setdefault(key, data.pop(key))
            if metadata or "metadata" in data:
                data["metadata"] = metadata
        if "repository" in data and "repo" not in data:
            legacy = data.pop("repository") or {}
            if not isinstance(legacy, dict):
                raise ValueError(f"repository: must be an object (got {legacy!r})")
            data["repo"] = {
                "git_url": legacy.get("clone_url", ""),
                "branch": legacy.get("branch", ""),
                "start_commit_sha": legacy.get("commit", ""),
            }
        if "lm_instructions" in data and isinstance(data.get("lm") or {}, dict):
            lm = dict(data.get("lm") or {})
            lm.setdefault("instructions", data.pop("lm_instructions"))
            data["lm"] = lm
        evaluation = data.get("evaluation")
        if isinstance(evaluation, dict):
            evaluation = dict(evaluation)
            for placeholder in ("content_rubric", "location_rubric", "clarity_rubric"):
                if placeholder in evaluation and not evaluation[placeholder]:
                    del evaluation[placeholder]  # created form: always-empty placeholders
            data["evaluation"] = evaluation
        return data

    def reference_problems(self) -> list[tuple[str, str]]:
        """Cross-field mistakes pydantic cannot see per field: (field, problem) pairs."""
        problems: list[tuple[str, str]] = []
        ids = [rubric.id for rubric in self.evaluation.rubrics]
        known = ", ".join(ids) or "none"
        for index, rubric_id in enumerate(ids):
            if rubric_id in ids[:index]:
                problems.append((f"evaluation.rubrics[{index}].id", f"duplicate rubric id {rubric_id!r}"))
        for index, script in enumerate(self.evaluation.test_scripts):
            if script.rubric_id not in ids:
                problems.append(
                    (
                        f"evaluation.test_scripts[{index}].rubric_id",
                        f"unknown rubric {script.rubric_id!r} (known: {known})",
                    )
                )
        if self.tests.rubric_id is not None and self.tests.rubric_id not in ids:
            problems.append(("tests.rubric_id", f"unknown rubric {self.tests.rubric_id!r} (known: {known})"))
        for test_id in self.tests.pass_to_pass:
            if test_id in self.tests.fail_to_pass:
                problems.append(("tests.pass_to_pass", f"{test_id!r} is also listed in fail_to_pass"))
        if self.metric is not None and (
            self.tests.fail_to_pass or self.tests.pass_to_pass or self.evaluation.test_scripts
        ):
            problems.append(("metric", "a task is scored by its metric or by hidden tests, not both (remove one)"))
        return problems

    @property
    def title(self) -> str:
        return self.metadata.title or self.task_id


@dataclass(frozen=True)
class TaskPaths:
    """Files of one task directory; the hidden ones are listed once in :attr:`hidden`."""

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / META_FILE

    @property
    def reference_diff(self) -> Path:
        return self.root / "diff.patch"

    @property
    def notes(self) -> Path:
        return self.root / "notes.md"

    @property
    def tests_dir(self) -> Path:
        return self.root / "tests"

    @property
    def hidden_dir(self) -> Path:
        return self.root / "hidden"

    @property
    def instructions_file(self) -> Path:
        return self.root / "LM_INSTRUCTIONS.md"

    @property
    def cassettes_dir(self) -> Path:
        return self.root / "cassettes"

    @property
    def overlay_instructions_file(self) -> Path:
        """OneShot's prepared layout (and its Hugging Face datasets) keep the prompt here."""
        return self.root / "overlay_files" / "LM_INSTRUCTIONS.md"

    @property
    def overrides_files(self) -> tuple[Path, ...]:
        """The task's own overrides (one of them at most; see :mod:`pytest_oneshot.overrides`)."""
        return (self.root / "overrides.json", self.root / "overrides.toml")

    @property
    def solution_dir(self) -> Path:
        """A reference solution as a script (Harbor's ``solution/solve.sh``), for tasks without a diff."""
        return self.root / "solution"

    @property
    def hidden(self) -> tuple[Path, ...]:
        """Everything that would give the answer away: never inside the agent's sandbox."""
        return (
            self.reference_diff,
            self.notes,
            self.tests_dir,
            self.hidden_dir,
            self.meta,
            self.cassettes_dir,
            self.solution_dir,
            *self.overrides_files,  # may hold inline hidden tests
        )


@dataclass(frozen=True)
class TaskOverrides:
    """What overrides add to a task beyond its spec (built by :mod:`pytest_oneshot.overrides`): edits of
    the repo at its start commit, files for the agent's sandbox, variables for the agent."""

    remove_paths: tuple[str, ...] = ()
    """Globs of repo paths removed from the start commit."""
    repo_files: tuple[tuple[str, bytes, bool], ...] = ()
    """(repo path, content, executable) written into the start commit."""
    sandbox_files: tuple[tuple[str, bytes, bool], ...] = ()
    """(``~/path`` or absolute path, content, executable) written into the agent's sandbox only."""
    env: Mapping[str, str] = field(default_factory=dict)
    records: tuple[Mapping[str, Any], ...] = ()
    """The effective overrides, one record per file applied (JSON-able, secrets redacted)."""

    @property
    def edits_repo(self) -> bool:
        return bool(self.remove_paths or self.repo_files)

    def digest(self) -> str:
        """sha256 of everything the overrides change (the spec's changes are in the spec itself)."""
        digest = hashlib.sha256()
        for pattern in self.remove_paths:
            digest.update(b"rm\0" + pattern.encode() + b"\0")
        for kind, files in (("repo", self.repo_files), ("sandbox", self.sandbox_files)):
            for path, data, executable in files:
                digest.update(f"{kind}\0{path}\0{int(executable)}\0".encode() + hashlib.sha256(data).digest())
        for name, value in sorted(self.env.items()):
            digest.update(f"env\0{name}\0{value}\0".encode())
        digest.update(json.dumps(list(self.records), sort_keys=True).encode())  # instructions, repo, evaluation...
        return digest.hexdigest()


@dataclass(frozen=True)
class Task:
    """A loaded, validated task: its spec and where its files are (and, overridden, what overrides add)."""

    spec: TaskSpec
    paths: TaskPaths
    overrides: TaskOverrides | None = None

    @property
    def name(self) -> str:
        return self.paths.root.name

    @property
    def bundle_path(self) -> Path | None:
        return self.paths.root / self.spec.repo.bundle if self.spec.repo.bundle else None

    @cached_property
    def instructions(self) -> str:
        """What the agent is asked to do (``lm.instructions``, else LM_INSTRUCTIONS.md)."""
        if self.spec.lm.instructions.strip():
            return self.spec.lm.instructions
        for path in (self.paths.instructions_file, self.paths.overlay_instructions_file):
            if path.is_file():
                return path.read_text(encoding="utf-8")
        return ""

    @cached_property
    def content_digest(self) -> str:
        """sha256 over every file of the task directory (and its bundle, wherever it is) and the overrides
        applied to it: a changed task -- spec, hidden tests, cassettes, repo, overrides -- is a different
        task for ``--oneshot-resume``."""
        root = self.paths.root
        files = {path for path in root.rglob("*") if path.is_file() and not _is_bytecode(path)}
        if self.bundle_path is not None:
            files.add(self.bundle_path)
        digest = hashlib.sha256()
        for path in sorted(files):
            name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path.resolve())
            digest.update(f"{name}\0{file_digest(path)}\n".encode())
        if self.overrides is not None:
            digest.update(self.overrides.digest().encode())
        return digest.hexdigest()

    def hidden_files(self) -> dict[str, bytes]:
        """Workdir-relative path -> content of every hidden file, written in only for scoring:
        ``tests/`` (kept at ``tests/``), the ``hidden/`` tree (at its own paths), inline test scripts."""
        files: dict[str, bytes] = {}
        for tree, prefix in ((self.paths.tests_dir, Path("tests")), (self.paths.hidden_dir, Path())):
            if tree.is_dir():
                for path in sorted(tree.rglob("*")):
                    if path.is_file() and not _is_bytecode(path):
                        files[(prefix / path.relative_to(tree)).as_posix()] = path.read_bytes()
        for script in self.spec.evaluation.test_scripts:
            files[script.path] = script.content.encode("utf-8")
        return files

    def docker_context(self) -> dict[str, bytes]:
        """The files beside ``environment.dockerfile`` (its build context, as Harbor's ``environment/``), when
        it lives in a directory of its own that holds nothing hidden; else none."""
        if not self.spec.environment.dockerfile:
            return {}
        dockerfile = (self.paths.root / self.spec.environment.dockerfile).resolve()
        directory = dockerfile.parent
        hidden = [path.resolve() for path in self.paths.hidden]
        if directory == self.paths.root.resolve() or any(h == directory or h in directory.parents for h in hidden):
            return {}
        return {
            path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.resolve() != dockerfile
        }

    def reference_patch(self) -> bytes:
        if not self.paths.reference_diff.is_file():
            raise FileNotFoundError(f"{self.paths.reference_diff}: no reference diff in this task")
        return self.paths.reference_diff.read_bytes()


def _is_bytecode(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def load_task(task_dir: Path) -> Task:
    """Read and validate ``task_dir/tb_meta.json``.

    Raises:
        TaskFormatError: naming the file and the field at fault.
    """
    paths = TaskPaths(task_dir)
    meta_file = str(paths.meta)
    try:
        raw = json.loads(paths.meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskFormatError(meta_file, None, "file not found") from None
    except IsADirectoryError:
        raise TaskFormatError(meta_file, None, "is a directory; it must be a JSON file") from None
    except OSError as exc:
        raise TaskFormatError(meta_file, None, f"cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskFormatError(meta_file, None, f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TaskFormatError(meta_file, None, f"must hold a JSON object (got {type(raw).__name__})")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(meta_file, exc) from None
    task = Task(spec, paths)
    check_task(task, meta_file)
    return task


def check_task(task: Task, file: str, note: str = "") -> None:
    """What pydantic cannot check per field: rubric references, shipped graded tests, bundle and Dockerfile.

    Raises:
        TaskFormatError: naming ``file`` and the field (``note`` is appended to the problem).
    """
    spec, task_dir = task.spec, task.paths.root
    for where, problem in spec.reference_problems()[:1]:
        raise TaskFormatError(file, where, problem + note)
    hidden = task.hidden_files()
    for kind in ("fail_to_pass", "pass_to_pass") if spec.tests.mode == "pytest" else ():
        for index, test_id in enumerate(getattr(spec.tests, kind)):
            if test_id.split("::", 1)[0] not in hidden:
                raise TaskFormatError(
                    file,
                    f"tests.{kind}[{index}]",
                    f"{test_id.split('::', 1)[0]} is not among the task's hidden tests "
                    "(files under hidden/ or tests/, or evaluation.test_scripts); "
                    "scoring must not trust the agent's copy" + note,
                )
    if task.bundle_path is not None and not task.bundle_path.is_file():
        raise TaskFormatError(file, "repo.bundle", f"bundle file not found: {task.bundle_path}{note}")
    if spec.environment.dockerfile and not (task_dir / spec.environment.dockerfile).is_file():
        raise TaskFormatError(file, "environment.dockerfile", f"file not found: {spec.environment.dockerfile}{note}")
