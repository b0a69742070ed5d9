import importlib

import pytest

from inventory import InventoryError


@pytest.fixture
def validation():
    return importlib.import_module("inventory.validation")


def test_validate_sku_normalises(validation):
    assert validation.validate_sku("  tool-004711 ") == "TOOL-004711"
    assert validation.validate_sku("AB-12") == "AB-12"


def test_validate_sku_rejects_malformed(validation):
    with pytest.raises(InventoryError) as info:
        validation.validate_sku("ab12")
    assert str(info.value) == "invalid SKU 'AB12': expected letters, a dash and digits, like 'AB-12'"
    with pytest.raises(InventoryError, match="^SKU must be a string, got bytes$"):
        validation.validate_sku(b"AB-12")


def test_validate_quantity_accepts_positive_int(validation):
    assert validation.validate_quantity(1) == 1
    assert validation.validate_quantity(10**6) == 10**6


def test_validate_quantity_rejects_bad_values(validation):
    cases = [
        (True, "quantity must be an integer, got bool"),
        ("3", "quantity must be an integer, got str"),
        (0, "quantity must be positive, got 0"),
        (-2, "quantity must be positive, got -2"),
    ]
    for bad, message in cases:
        with pytest.raises(InventoryError) as info:
            validation.validate_quantity(bad)
        assert str(info.value) == message
