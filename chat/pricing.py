"""Dollar estimates per call, from the providers' usage reports and a dated price table.

Prices as collected in ../shared/reference/ on 2026-11-24 (USD, paid tier). They are
estimates for budgets and caps, not invoices. Where the reference has no figure for a
model, the closest documented model's price is used and the entry says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat.domain import GenerationOptions

__all__ = ["GEMINI", "OPENAI", "PRICES_AS_OF", "Price", "gemini_price", "worst_case_turn_cost"]

PRICES_AS_OF = "2026-11-24"
PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens; ``basis`` says where the figure comes from."""

    input: float
    image_output: float
    text_output: float
    basis: str
    image_input: float | None = None  # when images in cost more than text in (OpenAI); else ``input``

    def cost(self, *, text_in: int = 0, image_in: int = 0, text_out: int = 0, image_out: int = 0) -> float:
        """Dollars for these token counts (thinking is billed as text output)."""
        image_in_price = self.input if self.image_input is None else self.image_input
        dollars = text_in * self.input + image_in * image_in_price
        return (dollars + text_out * self.text_output + image_out * self.image_output) / PER_MILLION


GEMINI: dict[str, Price] = {
    "gemini-3.1-flash-image": Price(
        0.50, 60.0, 3.0, "image out $60/1M (aifreeapi 2026-03); input assumed $0.50/1M"
    ),
    "gemini-3-pro-image": Price(2.0, 120.0, 12.0, "ai.google.dev/pricing as transcribed 2026-09-20"),
    "gemini-nano-banana-2.1": Price(1.5, 90.0, 9.0, "3P inference.sh 2026-11-06, unverified"),
    "gemini-3.1-flash-lite-image": Price(0.25, 30.0, 1.5, "about $0.034 per 1K image, 3P, unverified"),
}
# No per-token figures for the current OpenAI image models are in the reference; these are
# gpt-image-1's published rates, used as the estimate for every model until replaced.
OPENAI = Price(
    5.0, 40.0, 10.0, "gpt-image-1 rates (text in $5, image in $10, image out $40 per 1M)", image_input=10.0
)
UNKNOWN_GEMINI = GEMINI["gemini-3-pro-image"]  # the dearest: an unknown model never looks cheap

# Image tokens of one output image by size tier, for the worst case before a call.
_GEMINI_IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
_OPENAI_WORST_TOKENS = 16640  # a "max" quality 1024x1024 image in the emulator's table; generous


def gemini_price(model: str) -> Price:
    return GEMINI.get(model, UNKNOWN_GEMINI)


def worst_case_turn_cost(options: GenerationOptions, *, input_images: int) -> float:
    """An upper estimate for one turn before it runs: Gemini's answer plus an OpenAI fallback."""
    price = gemini_price(options.model)
    tokens = _GEMINI_IMAGE_TOKENS.get(options.image_size or "2K", 1680) if options.image_size else 2520
    gemini = (tokens * price.image_output + (input_images * 1120 + 2000) * price.input) / PER_MILLION
    openai = (
        _OPENAI_WORST_TOKENS * OPENAI.image_output + (input_images + 1) * 1000 * (OPENAI.image_input or 0)
    ) / PER_MILLION
    return gemini + openai
