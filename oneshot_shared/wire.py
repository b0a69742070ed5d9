"""Names and shapes of model traffic that both sides read: headers, format ids, token usage.

Usage comes in two shapes: the Responses API's (``input_tokens_details.cached_tokens``...) and the
flat counts codex reports, cassettes hold and the harness adds up (:data:`USAGE_KEYS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

SESSION_HEADER: Final = "x-oneshot-session"
"""The harness names a trial's trace session with this header; the recorder files requests by it."""
CASSETTE_FORMAT: Final = "oneshot-cassette/1"
"""A replay script (``tasks/<task>/cassettes/*.json``); ``oneshot traces export --cassette`` writes one."""
USAGE_KEYS: Final = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


def usage_from_api(usage: Mapping[str, Any]) -> dict[str, int]:
    """A Responses-API ``usage`` object as flat counts (missing fields count as 0)."""
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "cached_input_tokens": int(input_details.get("cached_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
        "reasoning_output_tokens": int(output_details.get("reasoning_tokens") or 0),
    }


def usage_to_api(counts: Mapping[str, int]) -> dict[str, Any]:
    """Flat counts as the ``usage`` object the Responses API sends (the inverse of :func:`usage_from_api`)."""
    return {
        "input_tokens": counts["input_tokens"],
        "input_tokens_details": {"cached_tokens": counts["cached_input_tokens"]},
        "output_tokens": counts["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": counts["reasoning_output_tokens"]},
        "total_tokens": counts["input_tokens"] + counts["output_tokens"],
    }
