"""Word statistics for plain text."""

from textstats.core import reading_time, top_words, word_count, words

__all__ = ["reading_time", "top_words", "word_count", "words"]
