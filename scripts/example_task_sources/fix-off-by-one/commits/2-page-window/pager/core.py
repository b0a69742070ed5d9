"""Split a sequence into numbered pages (pages are 1-based)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

T = TypeVar("T")


class PageOutOfRange(IndexError):
    """Raised when a page number is outside ``1..total_pages``."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a sequence, with what a template needs to draw the pager."""

    items: list[T]
    number: int
    per_page: int
    total_items: int
    total_pages: int

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.total_pages

    @property
    def first_index(self) -> int:
        """1-based position of the first item on this page (0 for an empty page)."""
        if not self.items:
            return 0
        return (self.number - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        """1-based position of the last item on this page (0 for an empty page)."""
        if not self.items:
            return 0
        return self.first_index + len(self.items) - 1


def page_count(total_items: int, per_page: int) -> int:
    """Number of pages needed to show ``total_items``; an empty list still has one page."""
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1 (got {per_page})")
    return max(1, math.ceil(total_items / per_page))


def paginate(items: Sequence[T], page: int = 1, per_page: int = 10) -> Page[T]:
    """Return page number ``page`` of ``items``, ``per_page`` items per page."""
    total_pages = page_count(len(items), per_page)
    if not 1 <= page <= total_pages:
        raise PageOutOfRange(f"page {page} is out of range 1..{total_pages}")
    start = (page - 1) * per_page
    return Page(
        items=list(items[start : start + per_page]),
        number=page,
        per_page=per_page,
        total_items=len(items),
        total_pages=total_pages,
    )


def page_window(current: int, total_pages: int, size: int = 5) -> list[int]:
    """Page numbers to link around ``current``: at most ``size`` of them, ``current`` centred when possible."""
    if size < 1:
        raise ValueError(f"size must be at least 1 (got {size})")
    size = min(size, total_pages)
    first = min(max(1, current - size // 2), total_pages - size + 1)
    return list(range(first, first + size))
