"""Token prices, to turn a run's token usage into dollars. An unknown price is None: tokens only.

Prices come from the model args (`price_prompt`, `price_completion`, USD per 1M tokens), or
for OpenAI's own API from the small built-in table below. List prices change: the table says
when it was written, and model args always win. A compatible server (vLLM, llama.cpp, ...)
never uses the table, since a local model named like an OpenAI one costs nothing per token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from evalharness.errors import BackendError

PRICES_AS_OF = "2025-06"
# USD per 1M tokens (prompt, completion): OpenAI list prices, standard tier, at PRICES_AS_OF.
OPENAI_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "davinci-002": (2.00, 2.00),
    "babbage-002": (0.40, 0.40),
}
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


@dataclass(frozen=True)
class Price:
    """USD per 1M prompt and completion tokens, and where the numbers came from."""

    prompt: float
    completion: float
    source: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000

    def to_json(self) -> dict[str, Any]:
        return {"usd_per_1m_prompt": self.prompt, "usd_per_1m_completion": self.completion, "source": self.source}


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BackendError(f"--model-args: {what} must be a number of USD per 1M tokens, got {value!r}") from None
    if number < 0 or number != number:
        raise BackendError(f"--model-args: {what} must be >= 0, got {value!r}")
    return number


def resolve_price(model: str, *, official_api: bool, price_prompt: Any = None, price_completion: Any = None) -> Price | None:
    """The price of `model`: model args first, then the table (OpenAI's API only), else None."""
    given = [v for v in (price_prompt, price_completion) if v not in (None, "")]
    if given:
        if len(given) != 2:
            raise BackendError("--model-args: give both price_prompt and price_completion (USD per 1M tokens)")
        return Price(_number(price_prompt, "price_prompt"), _number(price_completion, "price_completion"), "model args")
    if not official_api:
        return None
    name = model.strip().lower()
    found = OPENAI_PRICES.get(name) or OPENAI_PRICES.get(_SNAPSHOT.sub("", name))
    if found is None:
        return None
    return Price(found[0], found[1], f"built-in OpenAI list prices as of {PRICES_AS_OF}")
