"""What a valid SKU and a valid quantity are, in one place for the store and the CSV reader."""

from __future__ import annotations

import re

from inventory.errors import InventoryError

SKU_PATTERN = re.compile(r"[A-Z]{2,4}-[0-9]{1,6}")


def validate_sku(sku: object) -> str:
    """Return ``sku`` normalised (stripped, upper-cased).

    Raises:
        InventoryError: ``sku`` is not a string or not letters, a dash and digits.
    """
    if not isinstance(sku, str):
        raise InventoryError(f"SKU must be a string, got {type(sku).__name__}")
    normalised = sku.strip().upper()
    if not SKU_PATTERN.fullmatch(normalised):
        raise InventoryError(f"invalid SKU {normalised!r}: expected letters, a dash and digits, like 'AB-12'")
    return normalised


def validate_quantity(quantity: object) -> int:
    """Return ``quantity`` if it is a positive int (``bool`` is not a quantity).

    Raises:
        InventoryError: ``quantity`` is not an int, or is zero or negative.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InventoryError(f"quantity must be an integer, got {type(quantity).__name__}")
    if quantity <= 0:
        raise InventoryError(f"quantity must be positive, got {quantity}")
    return quantity
