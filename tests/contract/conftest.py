"""Fixtures of the sandbox contract suite (defined in sandbox_backends.py, which the tests import too)."""

from sandbox_backends import backend, open_sandbox, sandbox, third_party_factory

__all__ = ["backend", "open_sandbox", "sandbox", "third_party_factory"]
