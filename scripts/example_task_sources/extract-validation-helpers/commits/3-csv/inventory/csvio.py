"""Read and write stock as CSV: a ``sku,quantity[,price]`` header, then one row per SKU."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from inventory.store import SKU_PATTERN, Inventory, InventoryError


def load_csv(text: str) -> Inventory:
    """Build an Inventory from CSV text; repeated SKUs add up.

    Errors name the line they were found on, e.g. ``line 3: quantity must be positive, got 0``.
    """
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"sku", "quantity"} <= set(reader.fieldnames):
        raise InventoryError("line 1: header must have sku and quantity columns")
    stock = Inventory()
    for row in reader:
        line = reader.line_num
        sku = (row["sku"] or "").strip().upper()
        if not SKU_PATTERN.fullmatch(sku):
            raise InventoryError(
                f"line {line}: invalid SKU {sku!r}: expected letters, a dash and digits, like 'AB-12'"
            )
        try:
            quantity = int(row["quantity"] or "")
        except ValueError:
            raise InventoryError(f"line {line}: quantity must be an integer, got {row['quantity']!r}") from None
        if quantity <= 0:
            raise InventoryError(f"line {line}: quantity must be positive, got {quantity}")
        stock.add(sku, quantity)
        price = (row.get("price") or "").strip()
        if price:
            try:
                stock.set_price(sku, price)
            except InventoryError as exc:
                raise InventoryError(f"line {line}: {exc}") from None
    return stock


def dump_csv(stock: Inventory) -> str:
    """CSV text for ``stock``: SKUs in stock, sorted; the price column is empty when unknown."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "quantity", "price"])
    for sku in stock.skus():
        price = stock.price(sku)
        writer.writerow([sku, stock.quantity(sku), "" if price is None else price])
    return out.getvalue()


def read_csv(path: str | Path) -> Inventory:
    """Load the CSV file at ``path``."""
    return load_csv(Path(path).read_text(encoding="utf-8"))


def write_csv(stock: Inventory, path: str | Path) -> None:
    """Save ``stock`` to ``path`` as CSV."""
    Path(path).write_text(dump_csv(stock), encoding="utf-8")
