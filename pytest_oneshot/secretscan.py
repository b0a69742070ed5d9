"""Secret patterns: what must never leave the machine in a dataset, or land in a record of overrides.

A scan names the file and line and what the value looks like, never the value itself, so its own
error message cannot leak what it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Finding", "looks_secret", "redact", "scan_text"]

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an OpenAI/Anthropic-style API key (sk-...)", re.compile(r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{20,}")),
    ("a Hugging Face token (hf_...)", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[0-9A-Z]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(r"(?i)aws_?secret_?(?:access_?)?key\W{0,5}[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
    ),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
)
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|passw|credential|auth)")


@dataclass(frozen=True)
class Finding:
    """One suspected secret: where it is and what it looks like (never the value)."""

    file: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: looks like {self.kind}"


def scan_text(file: str, text: str) -> Iterator[Finding]:
    """Every line of ``text`` that holds something shaped like a credential."""
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in _PATTERNS:
            if pattern.search(line):
                yield Finding(file, number, kind)
                break


def looks_secret(name: str, value: str) -> bool:
    """Whether a variable should be redacted in records: a secret's shape, or a secret's name."""
    return bool(_SECRET_NAME.search(name)) or any(pattern.search(value) for _, pattern in _PATTERNS)


def redact(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the values of secret-looking variables replaced by ``<redacted>``."""
    return {name: "<redacted>" if looks_secret(name, value) else value for name, value in env.items()}
