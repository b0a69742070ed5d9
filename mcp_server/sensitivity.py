"""Sensitivity of a captured task, as the original decided it: a private GitHub repo is ``sensitive``.

The level is ``safe`` (public), ``sensitive`` (private, or hidden from our token) or ``unknown``
(not GitHub, no answer, no network). Asking GitHub never raises and waits a few seconds at most.
An explicit level (the tool call's ``sensitivity``, else ``$ONESHOT_SENSITIVITY``) skips the question.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from typing import Final, Literal

Level = Literal["safe", "sensitive", "unknown"]
LEVELS: Final = ("safe", "sensitive", "unknown")
TIMEOUT_SEC: Final = 5.0
_GITHUB: Final = re.compile(
    r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([\w.-]+)/([\w.-]+?)(?:\.git)?/?$"
)


def github_repo(url: str) -> tuple[str, str] | None:
    """``(owner, name)`` of a GitHub https or ssh URL."""
    match = _GITHUB.match(url.strip())
    return (match[1], match[2]) if match else None


def _ask_github(owner: str, name: str) -> Level:
    api = os.environ.get("ONESHOT_GITHUB_API", "https://api.github.com").rstrip("/")
    token = os.environ.get("PRIVATE_GITHUB_PAT") or os.environ.get("GH_PAT")
    request = urllib.request.Request(f"{api}/repos/{owner}/{name}", headers={"Accept": "application/vnd.github+json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SEC) as reply:
            private = json.loads(reply.read()).get("private")
    except urllib.error.HTTPError as exc:
        # With a token, "not found" or "forbidden" means a private repo we may not see.
        return "sensitive" if token and exc.code in (401, 403, 404) else "unknown"
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return "sensitive" if private is True else "safe" if private is False else "unknown"


def decide(remote_urls: list[str], explicit: str | None = None) -> Level:
    """The task's level: ``explicit`` (or ``$ONESHOT_SENSITIVITY``) when given, else GitHub's answer.

    Raises:
        ValueError: an explicit level that is not one of safe / sensitive / unknown.
    """
    chosen = explicit or os.environ.get("ONESHOT_SENSITIVITY")
    if chosen:
        if chosen not in LEVELS:
            raise ValueError(f"sensitivity must be one of {', '.join(LEVELS)} (got {chosen!r})")
        return chosen  # type: ignore[return-value]
    for url in remote_urls:
        if found := github_repo(url):
            return _ask_github(*found)
    return "unknown"
