"""Exceptions of the inventory package (also importable from ``inventory`` and ``inventory.store``)."""


class InventoryError(ValueError):
    """Bad input: a malformed SKU or quantity."""


class InsufficientStock(InventoryError):
    """More units were removed than are in stock."""
