"""Gemini's prices, as collected in ../shared/reference/ on 2026-11-24 (USD, paid tier).

Where the reference has no figure for a model, the closest documented model's price is used
and the entry says so.
"""

from __future__ import annotations

from chat.domain import GenerationOptions
from chat.providers.pricing import Price

__all__ = ["GEMINI_PRICES", "PRICES_AS_OF", "gemini_price", "worst_case_cost"]

PRICES_AS_OF = "2026-11-24"

GEMINI_PRICES: dict[str, Price] = {
    "gemini-3.1-flash-image": Price(
        0.50, 60.0, 3.0, "image out $60/1M (aifreeapi 2026-03); input assumed $0.50/1M"
    ),
    "gemini-3-pro-image": Price(2.0, 120.0, 12.0, "ai.google.dev/pricing as transcribed 2026-09-20"),
    "gemini-nano-banana-2.1": Price(1.5, 90.0, 9.0, "3P inference.sh 2026-11-06, unverified"),
    "gemini-3.1-flash-lite-image": Price(0.25, 30.0, 1.5, "about $0.034 per 1K image, 3P, unverified"),
}
_UNKNOWN = GEMINI_PRICES["gemini-3-pro-image"]  # the dearest: an unknown model never looks cheap

# Image tokens of one output image by size tier, for the worst case before a call.
_IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}


def gemini_price(model: str) -> Price:
    return GEMINI_PRICES.get(model, _UNKNOWN)


def worst_case_cost(options: GenerationOptions, *, input_images: int) -> float:
    """An upper estimate of one call before it runs: the largest image its size allows, every input image."""
    tokens = _IMAGE_TOKENS.get(options.image_size, 1680) if options.image_size else 2520
    return gemini_price(options.model).cost(text_in=input_images * 1120 + 2000, image_out=tokens)
