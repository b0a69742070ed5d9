"""The root of every user-facing error, so the ``oneshot`` CLI reports both sides' errors alike."""

from __future__ import annotations


class OneshotError(Exception):
    """Base class: ``str(err)`` is the complete message shown to the user."""
