"""Split a list into numbered pages."""

from pager.core import Page, PageOutOfRange, page_count, paginate

__all__ = ["Page", "PageOutOfRange", "page_count", "paginate"]
