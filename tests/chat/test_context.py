"""The bounded-replay policy: all text, the last K images, whole pairs only."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from chat.domain import GenerationOptions, ImagePart, Role, TextPart, Turn, frozen_metadata
from chat.providers.context import split_history
from chat.providers.gemini import GeminiClient
from chat.providers.gemini.wire import build_contents
from tests.chat.providers.test_gemini_emulator import BLOBS, PHOTO, answer, load, user

SIGNED = frozen_metadata({"gemini": {"thoughtSignature": "c2ln"}})


def image(n: int) -> ImagePart:
    return ImagePart(f"{n:064x}", "image/png", provider_metadata=SIGNED)


def conversation(pairs: int) -> list[Turn]:
    turns = [Turn(role=Role.USER, parts=(image(0), TextPart("a street")))]
    for n in range(1, pairs + 1):
        turns.append(
            Turn(
                role=Role.ASSISTANT,
                parts=(TextPart(f"v{n}", provider_metadata=SIGNED), image(n)),
                provider="gemini",
                model="m",
            )
        )
        turns.append(Turn(role=Role.USER, parts=(TextPart(f"edit {n + 1}"),)))
    return turns


def test_no_bound_keeps_everything():
    turns = conversation(5)
    assert split_history(turns, None) == ([], turns)


def test_keeps_the_last_k_images_and_cuts_at_a_user_message():
    turns = conversation(10)
    older, recent = split_history(turns, 3)
    assert recent[0].role is Role.USER and older[-1].role is Role.ASSISTANT
    assert sum(len(t.images()) for t in recent) == 3
    assert older + recent == turns


def test_the_message_being_answered_is_always_whole():
    many = Turn(role=Role.USER, parts=tuple(image(n) for n in range(100, 106)) + (TextPart("combine"),))
    older, recent = split_history([*conversation(3), many], 2)
    assert recent == [many] and len(older) == 7


def test_older_turns_become_text_and_kept_model_turns_keep_signatures():
    turns = conversation(6)
    loader = lambda part: b"img"  # noqa: E731
    contents = build_contents(turns, loader, model="m", keep_images=2)
    first = contents[0]["parts"][0]["text"]
    assert first.startswith("(Earlier in this conversation, summarised without its images:)")
    assert "User: a street [1 image omitted]" in first and "You answered: v1 [1 image omitted]" in first
    models = [c for c in contents if c["role"] == "model"]
    assert len(models) == 2 and all(p["thoughtSignature"] == "c2ln" for c in models for p in c["parts"])
    images = sum(1 for c in contents for p in c["parts"] if "inlineData" in p)
    assert images == 2


async def test_a_long_conversation_stays_bounded_and_is_accepted_by_the_emulator(emulator):
    BLOBS["e" * 64] = PHOTO
    options = GenerationOptions(model="gemini-3.1-flash-image")
    history = [user("make the sky stormy", ImagePart("e" * 64, "image/png"))]
    with httpx.Client() as http:
        gemini = GeminiClient(http, api_key=SecretStr("k"), base_url=emulator.url, keep_images=3)
        for n in range(12):
            reply = await gemini.reply(history, options, load)
            history += [answer(reply, options), user(f"edit {n}")]
    requests = emulator.requests()
    assert [r["status"] for r in requests] == [200] * 12
    images = [sum("inlineData" in p for c in r["body"]["contents"] for p in c["parts"]) for r in requests]
    assert images[:3] == [1, 2, 3] and set(images[3:]) <= {2, 3}  # whole pairs only, never more than 3
