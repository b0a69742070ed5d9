"""In-memory stock: a quantity per SKU."""

from __future__ import annotations

import re

SKU_PATTERN = re.compile(r"[A-Z]{2,4}-[0-9]{1,6}")


class InventoryError(ValueError):
    """Bad input: a malformed SKU or quantity."""


class InsufficientStock(InventoryError):
    """More units were removed than are in stock."""


class Inventory:
    """Quantities per SKU. SKUs are normalised (stripped, upper-cased) on the way in."""

    def __init__(self) -> None:
        self._stock: dict[str, int] = {}

    def add(self, sku: str, quantity: int) -> int:
        """Add ``quantity`` units of ``sku``; return the new quantity."""
        if not isinstance(sku, str):
            raise InventoryError(f"SKU must be a string, got {type(sku).__name__}")
        sku = sku.strip().upper()
        if not SKU_PATTERN.fullmatch(sku):
            raise InventoryError(f"invalid SKU {sku!r}: expected letters, a dash and digits, like 'AB-12'")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InventoryError(f"quantity must be an integer, got {type(quantity).__name__}")
        if quantity <= 0:
            raise InventoryError(f"quantity must be positive, got {quantity}")
        self._stock[sku] = self._stock.get(sku, 0) + quantity
        return self._stock[sku]

    def remove(self, sku: str, quantity: int) -> int:
        """Remove ``quantity`` units of ``sku``; return what is left."""
        if not isinstance(sku, str):
            raise InventoryError(f"SKU must be a string, got {type(sku).__name__}")
        sku = sku.strip().upper()
        if not SKU_PATTERN.fullmatch(sku):
            raise InventoryError(f"invalid SKU {sku!r}: expected letters, a dash and digits, like 'AB-12'")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InventoryError(f"quantity must be an integer, got {type(quantity).__name__}")
        if quantity <= 0:
            raise InventoryError(f"quantity must be positive, got {quantity}")
        have = self._stock.get(sku, 0)
        if quantity > have:
            raise InsufficientStock(f"cannot remove {quantity} of {sku}: only {have} in stock")
        self._stock[sku] = have - quantity
        return self._stock[sku]

    def quantity(self, sku: str) -> int:
        """Units of ``sku`` in stock (0 for an unknown SKU)."""
        if not isinstance(sku, str):
            raise InventoryError(f"SKU must be a string, got {type(sku).__name__}")
        sku = sku.strip().upper()
        if not SKU_PATTERN.fullmatch(sku):
            raise InventoryError(f"invalid SKU {sku!r}: expected letters, a dash and digits, like 'AB-12'")
        return self._stock.get(sku, 0)

    def skus(self) -> list[str]:
        """SKUs with at least one unit in stock, sorted."""
        return sorted(sku for sku, quantity in self._stock.items() if quantity > 0)
