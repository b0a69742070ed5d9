"""Errors that carry a user-facing one-line message: where, what, how to fix.

Tracebacks are for our bugs; everything raised from here is a user mistake or an
environment problem and is reported as its message alone. A pydantic error in a task file (or an
overrides file) becomes one such line naming the file and the field (:func:`validation_error`).
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from oneshot_shared.errors import OneshotError

__all__ = [
    "InfraError",
    "OneshotError",
    "RepoUnavailableError",
    "SandboxUnavailableError",
    "TaskFormatError",
    "describe",
    "validation_error",
]


class TaskFormatError(OneshotError):
    """A task directory is malformed (found at collection time)."""

    def __init__(self, file: str, field: str | None, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}")


class InfraError(OneshotError):
    """The harness could not produce a verdict (repo unreachable, sandbox died...).

    Reported as a pytest *error*, distinct from an agent *failure*.
    """

    def __init__(self, phase: str, problem: str) -> None:
        self.phase = phase
        self.problem = problem
        super().__init__(f"{phase}: {problem}")


class RepoUnavailableError(InfraError):
    """The task's repository could not be fetched at its start commit."""

    def __init__(self, problem: str) -> None:
        super().__init__("prepare", f"repository unreachable: {problem}")


class SandboxUnavailableError(InfraError):
    """A sandbox kind cannot run on this machine (no engine, not installed...)."""

    def __init__(self, problem: str) -> None:
        super().__init__("sandbox", problem)


_NAMED_FIELD = re.compile(r"^(?P<name>[a-z_]+): (?P<problem>.+)$", re.S)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: ErrorDetails) -> tuple[str | None, str]:
    """A pydantic error as (field path, one-line problem)."""
    where = _field_path(tuple(error.get("loc", ()))) or None
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "missing":
        return where, "required field is missing"
    if error.get("type") == "extra_forbidden":
        return where, "unknown field (check the spelling; see the task format in README)"
    if error.get("type") in ("model_type", "dict_type", "model_attributes_type"):
        return where, f"must be an object (got {error.get('input')!r})"
    if "input" in error and error.get("type") != "value_error":
        return where, f"{message} (got {error['input']!r})"
    named = _NAMED_FIELD.match(message)  # a model's own rule naming the field at fault: "report: ..."
    if named and error.get("type") == "value_error":
        return f"{where}.{named['name']}" if where else named["name"], named["problem"]
    return where, message


def validation_error(file: str, exc: ValidationError, note: str = "") -> TaskFormatError:
    """The first problem of ``exc`` (and how many more) as a one-line error naming ``file`` and the field."""
    where, problem = describe(exc.errors()[0])
    more = exc.error_count() - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return TaskFormatError(file, where, problem + note)
