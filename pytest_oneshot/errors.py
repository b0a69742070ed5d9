"""Errors that carry a user-facing one-line message: where, what, how to fix.

Tracebacks are for our bugs; everything raised from here is a user mistake or an
environment problem and is reported as its message alone.
"""

from __future__ import annotations

from oneshot_shared.errors import OneshotError

__all__ = ["InfraError", "OneshotError", "RepoUnavailableError", "SandboxUnavailableError", "TaskFormatError"]


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
