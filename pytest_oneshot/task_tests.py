"""A task's ``tests`` block: how its hidden tests run (``tests.mode``) and what they grade; and the
``metric`` block of tasks scored by an improvement instead.

``pytest`` mode runs the graded node ids through the harness's launcher; the other modes run any
shell command and read its exit code, a reward file or a JUnit/CTRF report from the verifier dir
(:mod:`pytest_oneshot.scoring.commands`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
TestMode = Literal["pytest", "exit_code", "reward", "junit", "ctrf"]
REPORT_DIR = "/logs/verifier"
"""Harbor's verifier directory: an absolute ``tests.report`` must lie in it (the harness maps it)."""
VERIFIER_DIR = ".oneshot/verifier"
"""Where non-pytest reports go, under the scoring sandbox's HOME (docker images link /logs/verifier there)."""
DEFAULT_REPORTS: dict[str, str] = {"reward": "reward.txt", "junit": "junit.xml", "ctrf": "ctrf.json"}


@dataclass(frozen=True)
class PytestCommand:
    """``tests.command`` taken apart: the variables it sets, its interpreter and its own arguments."""

    env: dict[str, str]
    python: str
    args: list[str]


def parse_tests_command(command: str) -> PytestCommand:
    """``[VAR=value ...] python -m pytest [args]`` or ``[VAR=value ...] pytest [args]``.

    Raises:
        ValueError: the command is not a pytest run (the message says what is accepted).
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot be parsed as a shell command ({exc})") from None
    env: dict[str, str] = {}
    while words and _ENV_ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    runs_module = words[1:3] in (["-m", "pytest"], ["-m", "py.test"])
    if len(words) >= 3 and _PYTHON.match(PurePosixPath(words[0]).name) and runs_module:
        return PytestCommand(env, words[0], words[3:])
    if words and PurePosixPath(words[0]).name in ("pytest", "py.test"):
        return PytestCommand(env, "python3", words[1:])
    raise ValueError(
        f"must run pytest: `python -m pytest [args]` or `pytest [args]`, optionally after VAR=value (got {command!r})"
    )


def report_path(report: str) -> str:
    """``report`` checked: a relative path without ``..`` (inside the verifier dir) or one under /logs/verifier.

    Raises:
        ValueError: anywhere else, e.g. inside the workspace.
    """
    path = PurePosixPath(report)
    if not report or ".." in path.parts or str(path) in (".", REPORT_DIR):
        raise ValueError(f"report: must name a file in the verifier dir (got {report!r})")
    if path.is_absolute() and PurePosixPath(REPORT_DIR) not in path.parents:
        raise ValueError(
            f"report: an absolute path must lie under {REPORT_DIR}/ (got {report!r}); "
            "or give a name relative to $ONESHOT_VERIFIER_DIR"
        )
    return report


class TestsSpec(BaseModel):
    """How the hidden tests run and what they grade.

    ``pytest`` mode: fail-to-pass / pass-to-pass are pytest node ids relative to the workdir. The other
    modes run ``command`` (any shell command) and read its verdict from its exit code, a reward file, or
    a JUnit/CTRF report it writes to ``report`` in a fresh directory the harness makes for this run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False
    mode: TestMode = Field("pytest", description="pytest, exit_code, reward, junit or ctrf")
    command: str = Field("python -m pytest", description="`python -m pytest [args]` or `pytest [args]`")
    report: str | None = Field(
        None,
        description="reward/junit/ctrf: file the command writes, relative to $ONESHOT_VERIFIER_DIR "
        "(or under /logs/verifier/); default reward.txt, junit.xml, ctrf.json",
    )
    fail_to_pass: list[str] = Field(default_factory=list)
    pass_to_pass: list[str] = Field(default_factory=list)
    rubric_id: str | None = Field(None, description="rubric scored by these tests' pass rate")
    setup: list[str] = Field(default_factory=list, description="commands run right before the tests")
    infrastructure: list[str] | None = Field(
        None, description="workdir paths that stay as at the start when scoring (default: the graded tests' dirs)"
    )

    @model_validator(mode="after")
    def _fits_mode(self) -> TestsSpec:
        if self.mode == "pytest":
            try:
                parse_tests_command(self.command)
            except ValueError as exc:
                raise ValueError(f"command: {exc}; for other test runners set tests.mode") from None
            if self.report is not None:
                raise ValueError("report: only for modes reward, junit and ctrf (got mode 'pytest')")
            return self
        if "command" not in self.model_fields_set or not self.command.strip():
            raise ValueError(f"command: mode {self.mode!r} needs the command that runs the tests")
        if self.report is not None and self.mode == "exit_code":
            raise ValueError("report: mode 'exit_code' reads no report")
        if self.report is not None:
            report_path(self.report)
        if self.mode in ("exit_code", "reward") and (self.fail_to_pass or self.pass_to_pass):
            raise ValueError(
                f"fail_to_pass: mode {self.mode!r} grades the whole command; per-test ids need mode junit or ctrf"
            )
        if self.mode in ("junit", "ctrf") and not self.fail_to_pass:
            raise ValueError(f"fail_to_pass: mode {self.mode!r} needs the report's test ids that must pass")
        return self

    @property
    def report_file(self) -> str | None:
        """The report the command writes (relative to the verifier dir, or absolute under /logs/verifier)."""
        return self.report or DEFAULT_REPORTS.get(self.mode)

    @field_validator("infrastructure")
    @classmethod
    def _relative_paths(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not path or Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(f"must be relative paths inside the workdir (got {path!r})")
        return value


class MetricSpec(BaseModel):
    """A research-bench task's score: a metric measured before and after the agent's change.

    The command, its files and the parsing are the task's: ``files`` (and the output file) are scored
    as at the start whatever the agent did to them, the output file is removed before each run, and
    both runs happen in fresh sandboxes the agent never reached.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(..., min_length=1, description="shell command run from the workdir, before and after")
    output: str = Field("", description="workdir-relative file the command writes the value to ('': its stdout)")
    pattern: str | None = Field(None, description="regex with one group; the last match is the value")
    json_key: str | None = Field(None, description="dotted key of the value in the output's JSON")
    direction: Literal["higher", "lower"] = Field("higher", description="which way is better")
    min_improvement: float = Field(0.0, ge=0, description="the item passes when the improvement is larger")
    files: list[str] = Field(default_factory=list, description="workdir paths of the metric, kept as at the start")
    timeout_sec: float = Field(600.0, gt=0)

    @field_validator("output")
    @classmethod
    def _relative_output(cls, value: str) -> str:
        if value and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"must be a relative path inside the workdir (got {value!r})")
        return value

    @field_validator("files")
    @classmethod
    def _relative_files(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path or Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(f"must be relative paths inside the workdir (got {path!r})")
        return value

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                groups = re.compile(value).groups
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if groups != 1:
                raise ValueError(f"needs exactly one group, the value (got {groups}: {value!r})")
        return value
