"""Name -> factory registries for the extension points (sandboxes, agents).

Built-in entries are lazy ``"module:attr"`` strings so an unused backend costs no import;
third-party entries come from an entry-point group or from the
``pytest_oneshot_register`` hook in a conftest.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from pytest_oneshot.errors import OneshotError

T = TypeVar("T")


class UnknownNameError(OneshotError):
    """A name that no registry entry answers to."""


@dataclass
class Registry(Generic[T]):
    """Factories of one kind (``sandbox`` or ``agent``) by short lowercase name."""

    kind: str
    entry_point_group: str
    _entries: dict[str, T | str] = field(default_factory=dict)
    _hints: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, factory: T | str, *, install_hint: str = "") -> None:
        """Add or replace ``name``; ``factory`` may be a lazy ``"module:attr"`` string."""
        self._entries[name] = factory
        if install_hint:
            self._hints[name] = install_hint

    def load_entry_points(self) -> None:
        for entry in entry_points(group=self.entry_point_group):
            self._entries.setdefault(entry.name, entry.value)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """Return the factory for ``name``, importing it on first use.

        Raises:
            UnknownNameError: listing the known names (and an install hint when one is known).
        """
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            try:
                loaded: T = getattr(importlib.import_module(module_name), attr)
            except ImportError as exc:
                hint = self._hints.get(name, "")
                raise UnknownNameError(
                    f"{self.kind} {name!r} is not installed: {exc}{'; ' + hint if hint else ''}"
                ) from None
            except Exception as exc:  # a plugin's own bug at import: name it, don't crash the session
                raise UnknownNameError(
                    f"{self.kind} {name!r} failed to load from {module_name}:{attr}: {type(exc).__name__}: {exc}"
                ) from None
            self._entries[name] = entry = loaded
        return entry
