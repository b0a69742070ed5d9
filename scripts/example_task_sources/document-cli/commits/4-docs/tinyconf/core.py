"""Parse, convert, dump and update ``key = value`` config files.

A file holds ``key = value`` lines, optionally under ``[section]`` headers; blank lines and lines
starting with ``#`` or ``;`` are ignored. Keys under a section are addressed with a dot:
``port`` under ``[db]`` is ``db.port``. Values are kept as strings until :func:`convert`.
"""

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
    """A malformed config file, key or value (also raised for unknown types and formats)."""


def parse(text: str) -> dict[str, str]:
    """Parse config ``text`` into a flat dict of dotted keys to string values.

    Args:
        text: the file's content.

    Raises:
        ConfigError: a line is neither blank, a comment, a ``[section]`` nor ``key = value``;
            the message names the line number.
    """
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
    """Read and :func:`parse` the config file at ``path`` (UTF-8).

    Args:
        path: the file to read.

    Raises:
        OSError: the file cannot be read.
        ConfigError: the file is malformed.
    """
    return parse(Path(path).read_text(encoding="utf-8"))


def convert(value: str, as_type: str = "str") -> Any:
    """Convert a string ``value`` to ``as_type``.

    Args:
        value: the raw string from the file.
        as_type: one of ``str``, ``int``, ``float`` or ``bool``. Booleans accept
            1/0, true/false, yes/no and on/off, in any case.

    Raises:
        ValueError: an ``int`` or ``float`` does not parse.
        ConfigError: a ``bool`` does not parse, or ``as_type`` is unknown.
    """
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
    """Look up ``key`` in ``config`` and :func:`convert` it.

    Args:
        config: a dict from :func:`parse` or :func:`load`.
        key: a dotted key such as ``db.port``.
        default: returned as is (not converted) when ``key`` is missing.
        as_type: the type to convert to (see :func:`convert`).
    """
    if key not in config:
        return default
    return convert(config[key], as_type)


def dump(config: dict[str, str], format: str = "ini") -> str:
    """Render ``config`` as text; :func:`parse` reads the ``ini`` form back unchanged.

    Args:
        config: dotted keys to string values.
        format: ``ini`` (top-level keys first, then one ``[section]`` per prefix, keys sorted)
            or ``json`` (one object, keys sorted).

    Raises:
        ConfigError: ``format`` is unknown.
    """
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


def set_value(path: str | Path, key: str, value: str, create: bool = False) -> None:
    """Set ``key`` to ``value`` in the file at ``path`` and write it back.

    The file is rewritten with :func:`dump`, so comments are not kept.

    Args:
        path: the config file.
        key: a dotted key such as ``db.port``; a new section is added when needed.
        value: the string to store.
        create: make the file when it does not exist instead of raising.

    Raises:
        ConfigError: the file does not exist and ``create`` is false, or ``key`` is invalid.
    """
    path = Path(path)
    if path.exists():
        config = load(path)
    elif create:
        config = {}
    else:
        raise ConfigError(f"{path} does not exist (use create=True to make it)")
    if not key or "=" in key or key.startswith(".") or key.endswith("."):
        raise ConfigError(f"invalid key {key!r}")
    config[key] = value
    path.write_text(dump(config), encoding="utf-8")
