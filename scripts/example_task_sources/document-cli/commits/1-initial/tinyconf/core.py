from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TYPES = ("str", "int", "float", "bool")
_SECTION = re.compile(r"\[([A-Za-z0-9_.-]+)\]")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    pass


def parse(text: str) -> dict[str, str]:
    """Parse config text."""
    config: dict[str, str] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        match = _SECTION.fullmatch(line)
        if match:
            section = match.group(1)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"line {number}: expected 'key = value', got {raw!r}")
        config[f"{section}.{key}" if section else key] = value.strip()
    return config


def load(path: str | Path) -> dict[str, str]:
    return parse(Path(path).read_text(encoding="utf-8"))


def convert(value: str, as_type: str = "str") -> Any:
    if as_type == "str":
        return value
    if as_type == "int":
        return int(value)
    if as_type == "float":
        return float(value)
    if as_type == "bool":
        lowered = value.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ConfigError(f"not a boolean: {value!r}")
    raise ConfigError(f"unknown type {as_type!r} (known: {', '.join(TYPES)})")


def get(config: dict[str, str], key: str, default: Any = None, as_type: str = "str") -> Any:
    if key not in config:
        return default
    return convert(config[key], as_type)


def dump(config: dict[str, str], format: str = "ini") -> str:
    if format == "json":
        return json.dumps(config, indent=2, sort_keys=True) + "\n"
    if format != "ini":
        raise ConfigError(f"unknown format {format!r} (known: ini, json)")
    sections: dict[str, list[str]] = {}
    for full_key in sorted(config):
        section, _, key = full_key.rpartition(".")
        sections.setdefault(section, []).append(f"{key} = {config[full_key]}")
    blocks = ["\n".join(lines) if not name else f"[{name}]\n" + "\n".join(lines) for name, lines in sorted(sections.items())]
    return "\n\n".join(blocks) + "\n"
