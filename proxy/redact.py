"""Secret redaction applied to every trace record before any byte of it is written.

Stdlib only: the mitmproxy addon loads this file inside mitmdump's own venv.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Header names whose value is a credential, whatever it looks like.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie", "set-cookie"}
)
_SECRET_HEADER_PARTS = ("token", "secret", "password", "apikey", "api-key", "api_key")
# JSON object keys whose string value is a credential.
_SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "authorization",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "auth_token",
        "openai_api_key",
    }
)

# A key may follow a non-alphanumeric char, or an escape left inside nested JSON / URL encoding
# (``\nsk-...``, ``%3Dsk-...``): a plain ``\b`` would miss exactly those.
_START = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf])|(?<=%[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4}))"
_KEY_PATTERNS = re.compile(
    _START + r"(?:sk-[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic: sk-..., sk-proj-..., sk-ant-...
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub classic tokens
    r"|github_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_\-]{30,})"  # Google
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"'\\,;]{8,}")


def redact_text(text: str) -> str:
    """Replace every known key pattern and bearer token in ``text``."""
    if not text:
        return text
    return _KEY_PATTERNS.sub(REDACTED, _BEARER.sub(r"\1" + REDACTED, text))


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(part in lowered for part in _SECRET_HEADER_PARTS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Drop credential header values, scrub the others."""
    return {name: REDACTED if is_secret_header(name) else redact_text(value) for name, value in headers.items()}


def redact(value: Any) -> Any:
    """Deep-redact a JSON-like value: secret-named fields blanked, every string scrubbed."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(item, str) and str(key).lower() in _SECRET_FIELDS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
