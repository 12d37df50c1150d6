"""OpenAI's image prices, as collected in ../shared/reference/ on 2026-11-24 (USD).

No per-token figures for the current OpenAI image models are in the reference; these are
gpt-image-1's published rates, used as the estimate for every model until replaced.
"""

from __future__ import annotations

from chat.providers.pricing import Price

__all__ = ["OPENAI_PRICE", "PRICES_AS_OF", "worst_case_cost"]

PRICES_AS_OF = "2026-11-24"

OPENAI_PRICE = Price(
    5.0, 40.0, 10.0, "gpt-image-1 rates (text in $5, image in $10, image out $40 per 1M)", image_input=10.0
)
_WORST_TOKENS = 16640  # a "max" quality 1024x1024 image in the emulator's table; generous


def worst_case_cost(*, input_images: int) -> float:
    """An upper estimate of one edit before it runs: the previous output and each attachment go in."""
    return OPENAI_PRICE.cost(image_in=(input_images + 1) * 1000, image_out=_WORST_TOKENS)
