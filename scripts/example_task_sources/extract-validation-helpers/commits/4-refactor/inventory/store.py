"""In-memory stock: a quantity and a price per SKU."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from inventory.errors import InsufficientStock, InventoryError
from inventory.validation import SKU_PATTERN, validate_quantity, validate_sku

__all__ = ["SKU_PATTERN", "InsufficientStock", "Inventory", "InventoryError"]


class Inventory:
    """Quantities and prices per SKU. SKUs are normalised (stripped, upper-cased) on the way in."""

    def __init__(self) -> None:
        self._stock: dict[str, int] = {}
        self._prices: dict[str, Decimal] = {}

    def add(self, sku: str, quantity: int) -> int:
        """Add ``quantity`` units of ``sku``; return the new quantity."""
        sku = validate_sku(sku)
        quantity = validate_quantity(quantity)
        self._stock[sku] = self._stock.get(sku, 0) + quantity
        return self._stock[sku]

    def remove(self, sku: str, quantity: int) -> int:
        """Remove ``quantity`` units of ``sku``; return what is left."""
        sku = validate_sku(sku)
        quantity = validate_quantity(quantity)
        have = self._stock.get(sku, 0)
        if quantity > have:
            raise InsufficientStock(f"cannot remove {quantity} of {sku}: only {have} in stock")
        self._stock[sku] = have - quantity
        return self._stock[sku]

    def quantity(self, sku: str) -> int:
        """Units of ``sku`` in stock (0 for an unknown SKU)."""
        return self._stock.get(validate_sku(sku), 0)

    def skus(self) -> list[str]:
        """SKUs with at least one unit in stock, sorted."""
        return sorted(sku for sku, quantity in self._stock.items() if quantity > 0)

    def set_price(self, sku: str, price: Decimal | int | float | str) -> Decimal:
        """Set the unit price of ``sku``, rounded to cents; return it."""
        sku = validate_sku(sku)
        try:
            amount = Decimal(str(price)).quantize(Decimal("0.01"))
        except InvalidOperation:
            raise InventoryError(f"price must be a number, got {price!r}") from None
        if amount < 0:
            raise InventoryError(f"price must not be negative, got {amount}")
        self._prices[sku] = amount
        return amount

    def price(self, sku: str) -> Decimal | None:
        """Unit price of ``sku``, or None when it has none."""
        return self._prices.get(validate_sku(sku))

    def total_value(self) -> Decimal:
        """Value of everything in stock; SKUs without a price count as zero."""
        return sum(
            (quantity * self._prices.get(sku, Decimal(0)) for sku, quantity in self._stock.items()),
            Decimal("0.00"),
        )
