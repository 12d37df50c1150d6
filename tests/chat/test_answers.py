"""Outcome -> Turn is a pure function: every case with literal values, no storage, no provider."""

from __future__ import annotations

from datetime import UTC, datetime

from chat.conversation.answers import answer_turn
from chat.conversation.fallback import Outcome
from chat.domain import Attempt, GenerationOptions, ImageData, ImageRole, ProviderReply, TextPart, Usage
from chat.errors import NoImageError, UnavailableError
from tests.pictures import png

NOW = datetime(2026, 12, 2, tzinfo=UTC)
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")


def model_for(provider: str, options: GenerationOptions) -> str:
    return f"{provider}-model"


def turn_for(outcome: Outcome):
    return answer_turn(outcome, OPTIONS, model_for=model_for, now=NOW)


def test_an_answer_is_an_answered_turn_with_its_image_as_an_answer_and_its_usage() -> None:
    image = png((1, 2, 3))
    reply = ProviderReply(
        "gemini",
        "m",
        (TextPart("Done."), ImageData(image, "image/png", thought=True)),
        usage=Usage(cost_usd=0.1),
    )
    turn, images = turn_for(Outcome(reply, None, (Attempt("gemini", "m", "ok"),)))

    assert turn.error is None and turn.notice is None and turn.usage == Usage(cost_usd=0.1)
    [part] = turn.images()
    assert (part.role, part.thought, part.sha256) == (ImageRole.ANSWER, True, images[0].sha256)
    assert images[0].data == image and (images[0].width, images[0].height) == (32, 24)
    assert turn.created_at == NOW and turn.options["model"] == OPTIONS.model


def test_a_text_only_answer_is_answered_with_a_notice() -> None:
    reply = ProviderReply("gemini", "m", (TextPart("Which car?"),))
    error = NoImageError("gemini", "text only", reply=reply)
    turn, images = turn_for(Outcome(None, error, (), (error,)))

    assert turn.error is None and turn.text() == "Which car?" and images == []
    assert turn.notice == error.user_message()


def test_a_failure_is_a_failed_turn_with_one_sentence_and_the_providers_model() -> None:
    error = UnavailableError("openai", "503")
    turn, images = turn_for(Outcome(None, error, (Attempt("openai", "x", "unavailable"),), (error,)))

    assert turn.failed and turn.parts == () and images == []
    assert (turn.error.kind, turn.error.message) == ("unavailable", error.user_message())
    assert (turn.provider, turn.model) == ("openai", "openai-model")


def test_an_answer_whose_image_does_not_decode_is_a_failed_turn() -> None:
    reply = ProviderReply("gemini", "m", (ImageData(b"\x89PNG truncated", "image/png"),))
    turn, images = turn_for(Outcome(reply, None, ()))

    assert turn.failed and turn.error.kind == "unavailable" and images == []
