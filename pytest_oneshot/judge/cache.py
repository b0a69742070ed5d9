"""The judge's answer cache: a rerun of the same question costs no call.

Keyed by a SHA-256 of every input of the call (base URL, the request body with its model, prompt and
schema, the rubric), never the API key; one JSON file per answer under ``<cache_dir>/judge/``, written
atomically, so concurrent trials and xdist workers share it safely. Only answers that parsed into a
verdict are stored: a failure is asked again next time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pytest_oneshot.files import write_atomic

__all__ = ["JudgeCache", "cache_key"]


def cache_key(**inputs: Any) -> str:
    """SHA-256 of ``inputs`` as canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JudgeCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer, or None (also for an unreadable entry: it is asked again and replaced)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        write_atomic(self._path(key), json.dumps(entry, indent=1).encode())
