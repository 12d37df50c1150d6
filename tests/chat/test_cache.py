"""The response cache's key: what a request is made of, and nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chat.conversation.cache import request_key
from chat.domain import GenerationOptions, Role, TextPart, Turn

pytestmark = pytest.mark.both_databases

HISTORY = [
    Turn(role=Role.USER, parts=(TextPart("warmer light"),), created_at=datetime(2026, 1, 1, tzinfo=UTC))
]
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image", seed=1)
KEY = request_key("gemini", "gemini-3.1-flash-image", HISTORY, OPTIONS)


def test_the_same_message_made_at_another_time_is_the_same_request() -> None:
    later = [replace(turn, created_at=datetime(2026, 6, 1, tzinfo=UTC)) for turn in HISTORY]
    assert request_key("gemini", "gemini-3.1-flash-image", later, OPTIONS) == KEY


def test_a_budget_is_never_sent_so_it_is_not_part_of_the_request() -> None:
    assert request_key("gemini", "gemini-3.1-flash-image", HISTORY, replace(OPTIONS, budget_usd=5.0)) == KEY


def test_anything_sent_makes_another_request() -> None:
    assert request_key("gemini", "gemini-3.1-flash-image", HISTORY, replace(OPTIONS, seed=2)) != KEY
    assert request_key("gemini", "gemini-3-pro-image", HISTORY, OPTIONS) != KEY
    assert request_key("openai", "gemini-3.1-flash-image", HISTORY, OPTIONS) != KEY
    other = [replace(HISTORY[0], parts=(TextPart("cooler light"),))]
    assert request_key("gemini", "gemini-3.1-flash-image", other, OPTIONS) != KEY
