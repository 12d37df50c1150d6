"""Variants through the real Gemini client and the emulator, which checks every replayed
signature: after "Use this", the next request carries the picked variant's model turn only,
byte for byte as it came (its own thoughtSignature), and the emulator accepts it."""

from __future__ import annotations

import httpx

from chat.conversation.service import Attachment
from chat.domain import GenerationOptions, Role, Route
from chat.sharing.access import Actor
from tests.fakes import emulator_providers, last, make_service, single_try
from tests.pictures import png

ACTOR = Actor("owner-of-the-emulated-variants")
FOUR = GenerationOptions(model="gemini-3.1-flash-image", variants=4)
ONE = GenerationOptions(model="gemini-3.1-flash-image")


async def test_the_next_edit_replays_the_picked_variant_with_its_own_signature(tmp_path, emulator) -> None:
    with httpx.Client() as http:
        providers = emulator_providers(http, emulator.url, "test-key", timeout_s=10)
        service = make_service(tmp_path / "data", policy=single_try(providers["gemini"]))
        photo = Attachment("street.png", png((120, 80, 40), (64, 48)))
        conversation = await last(service.send(ACTOR, None, "make it stormy", [photo], options=FOUR))
        answers = conversation.turns[1:]
        assert [(t.variant, t.failed) for t in answers] == [(n, False) for n in range(4)]
        assert len(emulator.requests()) == 4  # four requests with the same contents

        await service.pick(ACTOR, conversation.id, 3)  # v1c
        edited = await last(service.send(ACTOR, conversation.id, "now darker", options=ONE))

    assert not edited.turns[-1].failed  # the emulator took every signature replayed
    contents = emulator.requests()[-1]["body"]["contents"]
    models = [c for c in contents if c["role"] == "model"]
    assert len(models) == 1
    picked = conversation.turns[3]
    sent = [p.get("thoughtSignature") for p in models[0]["parts"]]
    replayed = [p for p in picked.parts if not p.thought]  # thoughts are stored for display only
    stored = [p.provider_metadata.get("gemini", {}).get("thoughtSignature") for p in replayed]
    assert sent == stored and any(sent)
    assert [t.role for t in edited.turns] == [Role.USER, *[Role.ASSISTANT] * 4, Role.USER, Role.ASSISTANT]


async def test_openai_variants_come_from_one_call_asking_for_n_images(tmp_path, emulator) -> None:
    three = GenerationOptions(model="gemini-3.1-flash-image", route=Route.OPENAI, variants=3)
    with httpx.Client() as http:
        providers = emulator_providers(http, emulator.url, "test-key", timeout_s=10)
        service = make_service(tmp_path / "data", policy=single_try(*providers.values()))
        photo = Attachment("street.png", png((120, 80, 40), (64, 48)))
        conversation = await last(service.send(ACTOR, None, "make it stormy", [photo], options=three))

    (call,) = emulator.requests()  # one images/edits request for all three
    assert call["path"].endswith("/images/edits") and call["form"]["n"] == "3"
    answers = conversation.turns[1:]
    assert [(t.variant, t.failed, t.provider) for t in answers] == [(n, False, "openai") for n in range(3)]
    assert len({t.shown_image().sha256 for t in answers}) == 3  # three different images
    # Each variant carries its share of the call's usage; together they are the call's.
    assert all(t.usage and t.usage.image_tokens for t in answers)
