"""Split text into words and count them."""

from __future__ import annotations

import re
import math
from collections import Counter
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, without leading or trailing apostrophes."""
    found = (match.strip("'").lower() for match in _WORD.findall(text))
    return [word for word in found if word]


def word_count(text: str) -> int:
    """How many words ``text`` holds."""
    return len(words(text))


def top_words(text: str, n: int = 10, *, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:
    """The ``n`` most frequent words with their counts, most frequent first.

    Words with the same count keep the order in which they first appear. Words in
    ``exclude`` (compared case-insensitively) are left out before the top ``n`` are picked.
    """
    if n < 0:
        raise ValueError(f"n must not be negative (got {n})")
    excluded = {word.lower() for word in exclude}
    return Counter(word for word in words(text) if word not in excluded).most_common(n)


def reading_time(text: str, words_per_minute: int = 200) -> int:
    """Whole minutes needed to read ``text`` at ``words_per_minute``, rounded up."""
    if words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive (got {words_per_minute})")
    return math.ceil(word_count(text) / words_per_minute)
