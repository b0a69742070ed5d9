import pytest

from pager import PageOutOfRange, page_window, paginate


def test_first_page():
    page = paginate(list(range(1, 26)), page=1, per_page=10)
    assert page.items == list(range(1, 11))
    assert page.number == 1
    assert page.total_items == 25


def test_exact_multiple_has_no_extra_page():
    items = list(range(9))
    assert paginate(items, per_page=3).total_pages == 3
    with pytest.raises(PageOutOfRange):
        paginate(items, page=4, per_page=3)


def test_empty_sequence_has_one_empty_page():
    page = paginate([], page=1, per_page=5)
    assert page.items == []
    assert page.total_pages == 1
    assert not page.has_next and not page.has_prev


def test_page_out_of_range_raises():
    with pytest.raises(PageOutOfRange, match="out of range 1..3"):
        paginate(list(range(9)), page=0, per_page=3)
    with pytest.raises(IndexError):
        paginate(list(range(9)), page=7, per_page=3)


def test_per_page_must_be_positive():
    with pytest.raises(ValueError, match="per_page"):
        paginate([1, 2, 3], per_page=0)


def test_has_prev_and_has_next():
    items = list(range(9))
    first, middle, last = (paginate(items, page=n, per_page=3) for n in (1, 2, 3))
    assert (first.has_prev, first.has_next) == (False, True)
    assert (middle.has_prev, middle.has_next) == (True, True)
    assert (last.has_prev, last.has_next) == (True, False)


def test_item_indexes():
    page = paginate(list("abcdefghi"), page=2, per_page=3)
    assert page.items == ["d", "e", "f"]
    assert (page.first_index, page.last_index) == (4, 6)


def test_page_window_centres_on_current():
    assert page_window(5, total_pages=10, size=5) == [3, 4, 5, 6, 7]


def test_page_window_clamps_at_edges():
    assert page_window(1, total_pages=10, size=5) == [1, 2, 3, 4, 5]
    assert page_window(10, total_pages=10, size=5) == [6, 7, 8, 9, 10]


def test_page_window_with_few_pages():
    assert page_window(2, total_pages=3, size=5) == [1, 2, 3]
