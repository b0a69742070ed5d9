"""Server-sent-events framing: where each event ends in a byte stream, and its parsed fields.

Stdlib only: the mitmproxy addon loads it by path to time events as they stream through; the cleaner
parses recorded streams with it and the token limiter finds ``response.completed`` usage in live ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass(frozen=True)
class SseEvent:
    """One event: its ``event:`` name (may be empty) and its ``data:`` payload, JSON-decoded if possible."""

    event: str
    data: Any


def event_end_offsets(body: bytes) -> list[int]:
    """Byte offset just past each complete event (a blank line ends an event)."""
    return [match.end() for match in _EVENT_END.finditer(body)]


def parse_events(text: str) -> list[SseEvent]:
    """Parse an SSE body; a trailing event without its blank line still counts (streams cut short)."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        name, data_lines = "", []
        for line in block.splitlines():
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data_lines.append(value)
        if not data_lines:
            continue
        raw = "\n".join(data_lines)
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw
        events.append(SseEvent(name, data))
    return events
