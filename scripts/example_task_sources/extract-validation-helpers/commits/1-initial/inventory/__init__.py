"""Stock keeping for a small shop."""

from inventory.store import InsufficientStock, Inventory, InventoryError

__all__ = ["InsufficientStock", "Inventory", "InventoryError"]
