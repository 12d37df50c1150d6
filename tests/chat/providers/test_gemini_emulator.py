"""GeminiClient against the emulator over real HTTP: every answer class maps to one outcome."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from chat.domain import GenerationOptions, ImagePart, ProviderReply, Role, TextPart, Turn, frozen_metadata
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    NoImageError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from chat.providers.gemini import GeminiClient
from tests.pictures import png

FLASH = GenerationOptions(model="gemini-3.1-flash-image")
BLOBS: dict[str, bytes] = {}
PHOTO = png((120, 80, 40), (64, 48))


def load(part: ImagePart) -> bytes:
    return BLOBS[part.sha256]


def user(text: str, *images: ImagePart) -> Turn:
    return Turn(role=Role.USER, parts=(*images, TextPart(text)))


def answer(reply: ProviderReply, options: GenerationOptions) -> Turn:
    """The turn the service would store: images by hash, metadata verbatim."""
    parts = []
    for part in reply.parts:
        if isinstance(part, TextPart):
            parts.append(part)
        else:
            sha = f"{len(BLOBS):064x}"
            BLOBS[sha] = part.data
            parts.append(
                ImagePart(sha, part.mime_type, thought=part.thought, provider_metadata=part.provider_metadata)
            )
    return Turn(
        role=Role.ASSISTANT,
        parts=tuple(parts),
        provider="gemini",
        model=reply.model,
        options=frozen_metadata(options.to_dict()),
    )


@pytest.fixture
async def gemini(emulator):
    with httpx.Client() as http:
        yield GeminiClient(http, api_key=SecretStr("test-key"), base_url=emulator.url, timeout_s=5)


async def test_three_turns_with_signatures_and_a_model_switch(gemini, emulator):
    BLOBS["f" * 64] = PHOTO
    history = [user("make the sky stormy", ImagePart("f" * 64, "image/png"))]
    for text, options in [
        ("now remove the car", FLASH),
        ("warmer light", GenerationOptions(model="gemini-3-pro-image")),
        (
            "add a rainbow",
            GenerationOptions(model="gemini-3-pro-image", aspect_ratio="16:9", image_size="2K"),
        ),
    ]:
        reply = await gemini.reply(history, options, load)
        assert reply.final_image() is not None
        history += [answer(reply, options), user(text)]
    assert [r["status"] for r in emulator.requests()] == [200, 200, 200]
    final = await gemini.reply(history, GenerationOptions(model="gemini-3-pro-image"), load)
    assert final.final_image().mime_type == "image/jpeg"


@pytest.mark.parametrize(
    ("trigger", "error"),
    [
        ("429", RateLimitedError),
        ("500", UnavailableError),
        ("503", UnavailableError),
        ("504", ProviderTimeoutError),
        ("block", BlockedError),
        ("image_safety", BlockedError),
        ("no_image", NoImageError),
        ("text_only", NoImageError),
        ("empty", NoImageError),
        ("malformed", UnavailableError),
    ],
)
async def test_fault_maps_to_one_error_type(gemini, emulator, trigger, error):
    emulator.queue_faults(trigger)
    with pytest.raises(error) as info:
        await gemini.reply([user("a red bicycle")], FLASH, load)
    if trigger == "429":
        assert info.value.retry_after == 2.0
    if trigger == "text_only":
        assert info.value.reply is not None and info.value.reply.parts


async def test_timeout(emulator):
    emulator.queue_faults("slow:1")
    with httpx.Client() as http:
        client = GeminiClient(http, api_key=SecretStr("k"), base_url=emulator.url, timeout_s=0.2)
        with pytest.raises(ProviderTimeoutError):
            await client.reply([user("x")], FLASH, load)


@pytest.mark.parametrize(("key", "error"), [("invalid-key", AuthError), ("denied-key", AuthError)])
async def test_bad_keys(emulator, key, error):
    with httpx.Client() as http:
        client = GeminiClient(http, api_key=SecretStr(key), base_url=emulator.url)
        with pytest.raises(error):
            await client.reply([user("x")], FLASH, load)


async def test_shut_down_model_is_a_bad_request(gemini):
    with pytest.raises(BadRequestError) as info:
        await gemini.reply([user("x")], GenerationOptions(model="gemini-2.5-flash-image"), load)
    assert info.value.status_code == 404


async def test_unreachable_server_is_unavailable():
    with httpx.Client() as http:
        client = GeminiClient(http, api_key=SecretStr("k"), base_url="http://127.0.0.1:9")
        with pytest.raises(UnavailableError):
            await client.reply([user("x")], FLASH, load)
