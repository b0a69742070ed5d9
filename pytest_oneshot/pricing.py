"""Model prices, so a run reports what its tokens cost: a small dated default table, user-extendable.

Prices are USD per million tokens. ``input_tokens`` as the API reports them include the cached
ones, which are billed at the cached rate instead; reasoning tokens are part of ``output_tokens``.
A model missing from the table has no cost (``None``), never a cost of 0: an unknown price must
not read as "free". ``--oneshot-prices PATH`` adds or overrides entries from a JSON file
``{"model": {"input": 1.25, "cached_input": 0.125, "output": 10.0}}`` (``cached_input`` defaults
to ``input``: no cache discount).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.usage import TokenUsage

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "PricesError", "cost_usd", "load_prices"]


class PricesError(OneshotError):
    """A prices file that cannot be used; the message names the file and the field."""


class Price(BaseModel):
    """List price of one model in USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    """Defaults to ``input`` (no cache discount)."""
    output: float = Field(ge=0)


PRICES_AS_OF: Final = "2025-08-07"
"""When the default table was copied from https://openai.com/api/pricing/ (standard tier, not batch
or flex); prices change, so pass ``--oneshot-prices`` for anything newer or negotiated."""

DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    name: Price(input=input_, cached_input=cached, output=output)
    for name, (input_, cached, output) in {
        "gpt-5": (1.25, 0.125, 10.00),
        "gpt-5-mini": (0.25, 0.025, 2.00),
        "gpt-5-nano": (0.05, 0.005, 0.40),
        "gpt-5-codex": (1.25, 0.125, 10.00),
        "gpt-4.1": (2.00, 0.50, 8.00),
        "gpt-4.1-mini": (0.40, 0.10, 1.60),
        "gpt-4.1-nano": (0.10, 0.025, 0.40),
        "gpt-4o": (2.50, 1.25, 10.00),
        "gpt-4o-mini": (0.15, 0.075, 0.60),
        "o3": (2.00, 0.50, 8.00),
        "o4-mini": (1.10, 0.275, 4.40),
        "codex-mini-latest": (1.50, 0.375, 6.00),
    }.items()
}

_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def load_prices(path: Path | None) -> dict[str, Price]:
    """The default table, updated with ``path``'s entries when given.

    Raises:
        PricesError: unreadable file, not JSON, or a bad entry (``<path>: <model>.<field>: ...``).
    """
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricesError(f"{path}: cannot read prices file ({exc.strerror})") from None
    except ValueError as exc:
        raise PricesError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PricesError(f'{path}: expected an object {{"model": {{"input": ..., "output": ...}}}}')
    for model, entry in data.items():
        try:
            prices[model] = Price.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in (model, *error["loc"]))
            raise PricesError(f"{path}: {field}: {error['msg']} (got {error['input']!r})") from None
    return prices


def cost_usd(prices: Mapping[str, Price], model: str | None, usage: TokenUsage) -> float | None:
    """What ``usage`` cost on ``model`` (a dated snapshot ``gpt-5-2025-08-07`` uses ``gpt-5``'s
    price unless listed itself); None when the model has no price."""
    if not model:
        return None
    price = prices.get(model) or prices.get(_SNAPSHOT_SUFFIX.sub("", model))
    if price is None:
        return None
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    total = (usage.input_tokens - cached) * price.input + cached * cached_rate + usage.output_tokens * price.output
    return round(total / 1_000_000, 8)
