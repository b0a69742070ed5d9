from decimal import Decimal

import pytest

from inventory import InventoryError
from inventory.csvio import dump_csv, load_csv, read_csv, write_csv


def test_load_csv_basic():
    stock = load_csv("sku,quantity\nAB-12,5\n cd-3 ,2\n")
    assert stock.skus() == ["AB-12", "CD-3"]
    assert stock.quantity("CD-3") == 2


def test_load_csv_with_prices():
    stock = load_csv("sku,quantity,price\nAB-12,2,1.5\nCD-3,1,\n")
    assert stock.price("AB-12") == Decimal("1.50")
    assert stock.price("CD-3") is None


def test_load_csv_repeated_rows_add_up():
    assert load_csv("sku,quantity\nAB-12,2\nab-12,3\n").quantity("AB-12") == 5


def test_load_csv_bad_sku_names_the_line():
    with pytest.raises(InventoryError) as info:
        load_csv("sku,quantity\nAB-12,1\nX1,2\n")
    assert str(info.value) == "line 3: invalid SKU 'X1': expected letters, a dash and digits, like 'AB-12'"


def test_load_csv_bad_quantity_names_the_line():
    with pytest.raises(InventoryError, match=r"^line 2: quantity must be an integer, got '2\.5'$"):
        load_csv("sku,quantity\nAB-12,2.5\n")
    with pytest.raises(InventoryError, match="^line 3: quantity must be positive, got 0$"):
        load_csv("sku,quantity\nAB-12,1\nCD-3,0\n")


def test_load_csv_bad_price_names_the_line():
    with pytest.raises(InventoryError, match="^line 2: price must be a number, got 'cheap'$"):
        load_csv("sku,quantity,price\nAB-12,1,cheap\n")


def test_load_csv_needs_header():
    with pytest.raises(InventoryError, match="^line 1: header must have sku and quantity columns$"):
        load_csv("AB-12,1\n")


def test_csv_round_trip(tmp_path):
    stock = load_csv("sku,quantity,price\nCD-3,1,\nAB-12,2,0.5\n")
    assert dump_csv(stock) == "sku,quantity,price\nAB-12,2,0.50\nCD-3,1,\n"
    write_csv(stock, tmp_path / "stock.csv")
    assert dump_csv(read_csv(tmp_path / "stock.csv")) == dump_csv(stock)
