"""Codex configuration for capture: the ``[mcp_servers.oneshot]`` table, and a per-session CODEX_HOME.

Codex starts MCP servers with a fixed environment whitelist plus the table's ``env``, so everything
the server needs (the repository, the tasks dir, the trace store and session) is written there. A
capture session gets its own CODEX_HOME *layered* over the user's: their ``config.toml`` is read, our
tables merged over it and the result written to the session's home; every other entry (auth, sessions,
history) is a symlink to theirs. The user's ``config.toml`` is never edited.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from oneshot_shared.errors import OneshotError
from oneshot_shared.wire import SESSION_HEADER

SERVER_NAME: Final = "oneshot"
TRACED_PROVIDER: Final = "oneshot-traced"
DEFAULT_UPSTREAM: Final = "https://api.openai.com/v1"
_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def user_codex_home() -> Path:
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")


def read_config(home: Path) -> dict[str, Any]:
    """The ``config.toml`` of a codex home ({} when there is none).

    Raises:
        OneshotError: the file is not valid TOML (named, with the parser's message).
    """
    path = home / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OneshotError(f"{path}: cannot be read as TOML: {exc}") from None


def mcp_server_table(env: Mapping[str, str]) -> dict[str, Any]:
    """``[mcp_servers.oneshot]``: this interpreter runs ``-m mcp_server``; ``required`` so a slow start is awaited."""
    return {
        "command": sys.executable,
        "args": ["-m", "mcp_server"],
        "env": {"PYTHONUNBUFFERED": "1", **env},
        "required": True,
        "startup_timeout_sec": 30,
        "tool_timeout_sec": 900,  # end_task runs the session's tests twice
        "default_tools_approval_mode": "approve",
    }


def upstream_of(config: Mapping[str, Any]) -> str:
    """Where the user's sessions go: their provider's ``base_url``, else OpenAI's API."""
    provider = config.get("model_provider")
    providers = config.get("model_providers") or {}
    if isinstance(provider, str) and isinstance(providers.get(provider), Mapping):
        return str(providers[provider].get("base_url") or DEFAULT_UPSTREAM)
    return str(config.get("openai_base_url") or DEFAULT_UPSTREAM)


def split_upstream(upstream: str) -> tuple[str, str]:
    """``(scheme://host:port, path)``: the proxy (reverse mode) forwards to the root, the client keeps the path."""
    parts = urlsplit(upstream.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}", parts.path


def traced_provider(config: Mapping[str, Any], proxy_url: str, session_id: str) -> dict[str, Any]:
    """The user's provider, sent through the tracing proxy and labelled with the session (the key stays theirs).

    ``proxy_url`` is the proxy's root; the upstream's path (``/v1``) is kept.
    """
    provider = config.get("model_provider")
    base = dict((config.get("model_providers") or {}).get(provider) or {}) if isinstance(provider, str) else {}
    if not base:
        base = {"name": "OpenAI", "env_key": "OPENAI_API_KEY", "wire_api": "responses"}
    headers = {**(base.get("http_headers") or {}), SESSION_HEADER: session_id}
    base_url = proxy_url + split_upstream(upstream_of(config))[1]
    return {**base, "name": f"{base.get('name', 'provider')} (traced)", "base_url": base_url, "http_headers": headers}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, tables recursively."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise OneshotError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def dumps(config: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text for ``config`` (scalars first, then one ``[table]`` per nested table)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in config.items() if not isinstance(v, Mapping)]
    for key, value in config.items():
        if isinstance(value, Mapping):
            name = f"{prefix}{_key(key)}"
            lines += ["", f"[{name}]", dumps(value, f"{name}.").rstrip("\n")]
    return "\n".join(line for line in lines if line is not None).lstrip("\n") + "\n"


def layered_home(dest: Path, user_home: Path, overrides: Mapping[str, Any]) -> Path:
    """A CODEX_HOME in ``dest``: the user's config with ``overrides`` merged in, their other files linked."""
    dest.mkdir(parents=True, exist_ok=True)
    if user_home.is_dir():
        for entry in user_home.iterdir():
            if entry.name != "config.toml" and not (dest / entry.name).exists():
                (dest / entry.name).symlink_to(entry)
    (dest / "config.toml").write_text(dumps(merge(read_config(user_home), overrides)), encoding="utf-8")
    return dest
