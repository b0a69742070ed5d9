"""Where pytest-oneshot keeps files between runs: one lookup each for the cache and the state dir."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Repo snapshots, environments, the mitmproxy venv: ``$ONESHOT_CACHE_DIR``, else the XDG cache dir."""
    if env := environ.get("ONESHOT_CACHE_DIR"):
        return Path(env)
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-oneshot"


def state_dir() -> Path:
    """Proxy pid files, logs, confdirs, default trace databases: ``$ONESHOT_STATE_DIR``, else XDG state."""
    if env := os.environ.get("ONESHOT_STATE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pytest-oneshot"


def data_dir() -> Path:
    """Files a user keeps (captured tasks): ``$ONESHOT_DATA_DIR``, else the XDG data dir."""
    if env := os.environ.get("ONESHOT_DATA_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pytest-oneshot"
