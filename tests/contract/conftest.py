"""Fixtures of the contract suites (defined in sandbox_backends.py and judge_backends.py, which the tests
import too)."""

from judge_backends import judge_backend, third_party_judge_factory, upstream
from sandbox_backends import backend, open_sandbox, sandbox, third_party_factory

__all__ = [
    "backend",
    "judge_backend",
    "open_sandbox",
    "sandbox",
    "third_party_factory",
    "third_party_judge_factory",
    "upstream",
]
