"""Split text into words and count them."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, without leading or trailing apostrophes."""
    found = (match.strip("'").lower() for match in _WORD.findall(text))
    return [word for word in found if word]


def word_count(text: str) -> int:
    """How many words ``text`` holds."""
    return len(words(text))


def top_words(text: str, n: int = 10) -> list[tuple[str, int]]:
    """The ``n`` most frequent words with their counts, most frequent first.

    Words with the same count keep the order in which they first appear.
    """
    if n < 0:
        raise ValueError(f"n must not be negative (got {n})")
    return Counter(words(text)).most_common(n)
