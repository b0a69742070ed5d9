"""Cost from tokens: cached input at its own rate, dated snapshots, user prices, unknown is not free."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_oneshot.pricing import DEFAULT_PRICES, Price, cost_usd, load_prices
from pytest_oneshot.usage import TokenUsage

USAGE = TokenUsage(
    input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000, reasoning_output_tokens=50_000
)


def test_cached_input_is_billed_at_its_rate_and_reasoning_is_output() -> None:
    prices = {"m": Price(input=2.0, cached_input=0.5, output=8.0)}

    assert cost_usd(prices, "m", USAGE) == pytest.approx(
        600_000 * 2.0 / 1e6 + 400_000 * 0.5 / 1e6 + 100_000 * 8.0 / 1e6
    )


def test_a_dated_snapshot_uses_its_family_price_unless_listed() -> None:
    snapshot = cost_usd(DEFAULT_PRICES, "gpt-5-mini-2025-08-07", USAGE)

    assert snapshot is not None and snapshot == cost_usd(DEFAULT_PRICES, "gpt-5-mini", USAGE)
    assert cost_usd({"gpt-5-mini-2025-08-07": Price(input=0, output=0)}, "gpt-5-mini-2025-08-07", USAGE) == 0


@pytest.mark.parametrize("model", ["replay", "replay:recorded", "gpt-6-imaginary", None])
def test_unknown_model_has_no_cost(model: str | None) -> None:
    assert cost_usd(DEFAULT_PRICES, model, USAGE) is None


def test_prices_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"my-model": {"input": 3, "output": 9}, "gpt-5": {"input": 1, "cached_input": 0.1, "output": 2}}')

    prices = load_prices(path)

    assert cost_usd(prices, "my-model", USAGE) == pytest.approx((1_000_000 * 3 + 100_000 * 9) / 1e6), (
        "no cache discount"
    )
    assert prices["gpt-5"] == Price(input=1, cached_input=0.1, output=2)
    assert prices["gpt-5-mini"] == DEFAULT_PRICES["gpt-5-mini"]
    assert load_prices(None) == dict(DEFAULT_PRICES)
