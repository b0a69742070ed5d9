from decimal import Decimal

import pytest

from inventory import InsufficientStock, Inventory, InventoryError


@pytest.fixture
def stock():
    return Inventory()


def test_add_new_sku(stock):
    assert stock.add("AB-12", 5) == 5
    assert stock.quantity("AB-12") == 5


def test_add_accumulates(stock):
    stock.add("AB-12", 5)
    assert stock.add("AB-12", 3) == 8


def test_add_normalises_sku(stock):
    stock.add("  ab-12 ", 2)
    assert stock.skus() == ["AB-12"]
    assert stock.quantity("Ab-12") == 2


def test_add_rejects_malformed_sku(stock):
    with pytest.raises(InventoryError) as info:
        stock.add("ab12", 1)
    assert str(info.value) == "invalid SKU 'AB12': expected letters, a dash and digits, like 'AB-12'"


def test_add_rejects_non_string_sku(stock):
    with pytest.raises(InventoryError, match="^SKU must be a string, got int$"):
        stock.add(1234, 1)


def test_add_rejects_bool_quantity(stock):
    with pytest.raises(InventoryError, match="^quantity must be an integer, got bool$"):
        stock.add("AB-12", True)


def test_add_rejects_float_quantity(stock):
    with pytest.raises(InventoryError, match="^quantity must be an integer, got float$"):
        stock.add("AB-12", 2.0)


def test_add_rejects_zero_and_negative(stock):
    for bad in (0, -3):
        with pytest.raises(InventoryError, match=f"^quantity must be positive, got {bad}$"):
            stock.add("AB-12", bad)
    assert stock.skus() == []


def test_remove_reduces_stock(stock):
    stock.add("AB-12", 5)
    assert stock.remove("ab-12", 2) == 3


def test_remove_more_than_in_stock(stock):
    stock.add("AB-12", 1)
    with pytest.raises(InsufficientStock, match="^cannot remove 2 of AB-12: only 1 in stock$"):
        stock.remove("AB-12", 2)
    assert stock.quantity("AB-12") == 1


def test_remove_validates_like_add(stock):
    with pytest.raises(InventoryError, match="^invalid SKU 'X-1'"):
        stock.remove("x-1", 1)
    with pytest.raises(InventoryError, match="^quantity must be positive, got 0$"):
        stock.remove("AB-12", 0)


def test_quantity_of_unknown_sku_is_zero(stock):
    assert stock.quantity("ZZ-9") == 0


def test_quantity_validates_sku(stock):
    with pytest.raises(InventoryError, match="^SKU must be a string, got NoneType$"):
        stock.quantity(None)


def test_sold_out_skus_are_not_listed(stock):
    stock.add("AB-12", 1)
    stock.add("CD-3", 1)
    stock.remove("AB-12", 1)
    assert stock.skus() == ["CD-3"]


def test_set_price_rounds_to_cents(stock):
    assert stock.set_price(" ab-12", "2.499") == Decimal("2.50")
    assert stock.price("AB-12") == Decimal("2.50")
    assert stock.price("CD-3") is None


def test_set_price_rejects_bad_prices(stock):
    with pytest.raises(InventoryError, match="^price must not be negative, got -1.00$"):
        stock.set_price("AB-12", -1)
    with pytest.raises(InventoryError, match="^price must be a number, got 'free'$"):
        stock.set_price("AB-12", "free")
    with pytest.raises(InventoryError, match="^invalid SKU 'AB-'"):
        stock.set_price("AB-", 1)


def test_total_value(stock):
    stock.add("AB-12", 3)
    stock.add("CD-3", 2)
    stock.set_price("AB-12", "1.25")
    assert stock.total_value() == Decimal("3.75")


def test_error_hierarchy():
    assert issubclass(InsufficientStock, InventoryError)
    assert issubclass(InventoryError, ValueError)
    from inventory.store import InsufficientStock as FromStore, InventoryError as BaseFromStore

    assert (FromStore, BaseFromStore) == (InsufficientStock, InventoryError)
