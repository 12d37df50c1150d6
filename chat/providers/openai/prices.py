"""OpenAI's image prices, as collected in ../shared/reference/ on 2026-11-24 (USD).

No per-token figures for the current OpenAI image models are in the reference; these are
gpt-image-1's published rates, used as the estimate for every model until replaced.
"""

from __future__ import annotations

from chat.providers.pricing import Price

__all__ = ["OPENAI_PRICE", "PARTIAL_IMAGE_TOKENS", "PRICES_AS_OF", "worst_case_cost"]

PRICES_AS_OF = "2026-11-24"

OPENAI_PRICE = Price(
    5.0, 40.0, 10.0, "gpt-image-1 rates (text in $5, image in $10, image out $40 per 1M)", image_input=10.0
)
_WORST_TOKENS = 16640  # a "max" quality 1024x1024 image in the emulator's table; generous
#: "each partial image will incur an additional 100 image output tokens" (OpenAI's image
#: generation guide, "Partial images cost"); the ``usage`` of the completed event counts "the
#: image tokens in the output image" (SDK), so the partials are added on top of it.
PARTIAL_IMAGE_TOKENS = 100


def worst_case_cost(*, input_images: int, n: int = 1, partial_images: int = 0) -> float:
    """An upper estimate of one edit before it runs: the previous output and each attachment go in,
    ``n`` images and ``partial_images`` drafts come out."""
    image_out = n * _WORST_TOKENS + partial_images * PARTIAL_IMAGE_TOKENS
    return OPENAI_PRICE.cost(image_in=(input_images + 1) * 1000, image_out=image_out)
