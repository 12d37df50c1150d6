"""Variants on the page: labels v1a…, a failed one keeps its letter, the newest batch in the grid
with its "Use this" choices, and the cost x N before sending."""

from __future__ import annotations

from chat.domain import Conversation, ImagePart, ImageRole, Role, TextPart, Turn, TurnError
from chat.ui.render import to_messages, versions
from chat.ui.variants import batch, estimate, grid, labels, pick_choices

SHA = {name: f"{n:064x}" for n, name in enumerate(["photo", "a", "b", "d", "lone"])}


def image(name: str) -> ImagePart:
    return ImagePart(SHA[name], "image/png", role=ImageRole.ANSWER)


def variant(n: int, name: str | None, *, picked: bool = False) -> Turn:
    if name is None:
        return Turn(Role.ASSISTANT, (), error=TurnError("unavailable", "Gemini is unavailable."), variant=n)
    return Turn(
        Role.ASSISTANT,
        (image(name),),
        provider="gemini",
        model="gemini-3.1-flash-image",
        variant=n,
        picked=picked,
    )


USER = Turn(Role.USER, (ImagePart(SHA["photo"], "image/png"), TextPart("stormy")))
LONE = Turn(Role.ASSISTANT, (image("lone"),), provider="gemini", model="m", picked=True)
FOUR = Conversation(
    "c",
    "t",
    (USER, LONE, USER, variant(0, "a"), variant(1, "b", picked=True), variant(2, None), variant(3, "d")),
)


def path(part: ImagePart) -> str:
    return f"/blobs/{part.sha256[-1]}.png"


def test_a_batch_shares_a_number_and_a_failed_variant_keeps_its_letter() -> None:
    assert labels(FOUR) == {1: "v1", 3: "v2a", 4: "v2b", 5: "v2c", 6: "v2d"}
    assert [label for label, _ in versions(FOUR)] == [
        "v1 \u00b7 Gemini m",
        *(f"v2{x} \u00b7 Gemini gemini-3.1-flash-image" for x in "abd"),
    ]
    chat = [m["content"] for m in to_messages(FOUR, path) if m["role"] == "assistant"]
    assert chat[3] == "\u26a0\ufe0f v2c failed: Gemini is unavailable."
    assert "v2b" in chat[2][0] and "\u2713 used next" in chat[2][0]
    assert "used next" not in chat[1][0]


def test_the_grid_shows_the_newest_batch_that_came_and_use_this_offers_those() -> None:
    assert batch(FOUR) == [3, 4, 5, 6]
    assert [caption for _, caption in grid(FOUR, path)] == [
        "v2a \u00b7 Gemini gemini-3.1-flash-image",
        "v2b \u00b7 \u2713 used next \u00b7 Gemini gemini-3.1-flash-image",
        "v2d \u00b7 Gemini gemini-3.1-flash-image",
    ]
    assert pick_choices(FOUR) == ([("v2a", 3), ("v2b", 4), ("v2d", 6)], 4)
    after = Conversation("c", "t", (*FOUR.turns, USER, LONE))
    assert batch(after) == [] and grid(after, path) == [] and pick_choices(after) == ([], None)


def test_the_cost_before_sending_counts_every_variant() -> None:
    assert estimate(0.54, 4) == "4 variants: up to \u2248 $0.54"
    assert estimate(0.135, 1) == "1 answer: up to \u2248 $0.14"


def test_a_newer_answer_to_the_same_message_takes_the_mark_from_the_picked_variant() -> None:
    retried = Conversation("c", "t", (*FOUR.turns, LONE))
    chat = [m["content"] for m in to_messages(retried, path) if m["role"] == "assistant"]
    assert not any("used next" in str(content) for content in chat)
    assert batch(retried) == [] and pick_choices(retried) == ([], None)
