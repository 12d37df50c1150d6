"""Dollar estimates per call: what a price is and how token counts become dollars.

Each provider package holds its own dated price table (``chat.providers.<name>.prices``), prices
its answers' usage and gives a worst case before a call; nothing here knows a provider. Prices
are estimates for budgets and caps, not invoices.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PER_MILLION", "Price"]

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
