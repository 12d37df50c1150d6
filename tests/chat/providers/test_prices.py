"""Each provider prices its own calls: the worst case before a call, from its dated table."""

from __future__ import annotations

import pytest

from chat.domain import GenerationOptions
from chat.providers.gemini import prices as gemini
from chat.providers.openai import prices as openai


def test_gemini_worst_case_is_the_largest_image_the_size_allows_and_every_input_image() -> None:
    options = GenerationOptions(model="gemini-3.1-flash-image", image_size="1K")
    # $0.50 per 1M in (2 images of 1,120 tokens and 2,000 of text), $60 per 1M for a 1,120-token image
    assert gemini.worst_case_cost(options, input_images=2) == pytest.approx((4240 * 0.5 + 1120 * 60.0) / 1e6)
    unsized = GenerationOptions(model="gemini-3.1-flash-image")
    assert gemini.worst_case_cost(unsized, input_images=0) == pytest.approx((2000 * 0.5 + 2520 * 60.0) / 1e6)


def test_an_unknown_gemini_model_is_priced_as_the_dearest() -> None:
    assert gemini.gemini_price("gemini-next-image") == gemini.GEMINI_PRICES["gemini-3-pro-image"]


def test_openai_worst_case_is_the_previous_output_and_each_attachment_in_and_a_max_quality_image_out() -> (
    None
):
    assert openai.worst_case_cost(input_images=1) == pytest.approx((2000 * 10.0 + 16640 * 40.0) / 1e6)
