import pytest

import textstats

TEXT = "The cat and the hat. The cat sat on the mat; 'twas a cat's life."


def test_words_lowercases_and_strips_quotes():
    assert textstats.words("'Hello' World, it's DON'T") == ["hello", "world", "it's", "don't"]


def test_word_count():
    assert textstats.word_count(TEXT) == 15
    assert textstats.word_count("") == 0


def test_top_words_orders_by_count_then_first_seen():
    assert textstats.top_words(TEXT, 3) == [("the", 4), ("cat", 2), ("and", 1)]


def test_top_words_negative_n_raises():
    with pytest.raises(ValueError):
        textstats.top_words(TEXT, -1)


def test_reading_time_rounds_up():
    assert textstats.reading_time("word " * 201) == 2
    assert textstats.reading_time("word " * 30, words_per_minute=30) == 1
    assert textstats.reading_time("") == 0


def test_top_words_exclude_leaves_words_out():
    result = textstats.top_words(TEXT, 3, exclude=["the", "and"])
    assert result == [("cat", 2), ("hat", 1), ("sat", 1)]


def test_exclude_is_case_insensitive():
    assert textstats.top_words("The the THE cat", 5, exclude=["tHe"]) == [("cat", 1)]


def test_exclude_applies_before_the_limit():
    assert len(textstats.top_words(TEXT, 4, exclude=["the", "cat"])) == 4


def test_exclude_accepts_any_iterable():
    excluded = (word for word in ["the", "cat"])
    assert textstats.top_words(TEXT, 1, exclude=excluded) == [("and", 1)]
    assert textstats.top_words(TEXT, 1, exclude=frozenset({"the"})) == [("cat", 2)]


def test_exclude_does_not_change_word_count_or_default():
    assert textstats.top_words(TEXT, 2, exclude=[]) == textstats.top_words(TEXT, 2)
    assert textstats.word_count(TEXT) == 15
