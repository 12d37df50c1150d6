"""GeminiClient over httpx.MockTransport: URL, headers, body, and failures mapped to types."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from pydantic import SecretStr

from chat.domain import GenerationOptions, ImagePart, ImageRole, Role, TextPart, Turn
from chat.errors import AuthError, BadRequestError, MissingKeyError, UnavailableError
from chat.providers.gemini import GeminiClient
from tests.chat.test_options import HOSTILE_MODEL_IDS
from tests.fakes import TRANSPORT_FAILURES, raising, recording

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
HISTORY = [Turn(role=Role.USER, parts=(TextPart("a red bicycle"),))]
OK_BODY = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [{"inlineData": {"mimeType": "image/png", "data": "aW1n"}}],
            },
            "finishReason": "STOP",
        }
    ]
}


def client(handler, key: str | None = "k-123") -> GeminiClient:
    """The non-streaming path (tests/chat/providers/test_gemini_stream.py has the streaming one)."""
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return GeminiClient(
        http, api_key=SecretStr(key) if key else None, base_url="https://gl.test/", stream=False
    )


async def test_posts_to_generate_content_with_key_header():
    seen, handler = recording(OK_BODY)

    reply = await client(handler).reply(HISTORY, OPTIONS, lambda part: b"")
    assert reply.final_image().data == b"img"
    request = seen[0]
    assert str(request.url) == "https://gl.test/v1beta/models/gemini-3.1-flash-image:generateContent"
    assert request.headers["x-goog-api-key"] == "k-123"
    assert "key=" not in str(request.url)
    assert json.loads(request.content)["contents"] == [{"role": "user", "parts": [{"text": "a red bicycle"}]}]


async def test_missing_key_fails_before_any_request():
    handler = raising(AssertionError("no request expected"))
    with pytest.raises(MissingKeyError) as info:
        await client(handler, key=None).reply(HISTORY, OPTIONS, lambda part: b"")
    assert isinstance(info.value, AuthError)
    assert "GEMINI_API_KEY=" in info.value.user_message() and "nothing was sent" in info.value.user_message()


@pytest.mark.parametrize(("exc", "kind"), TRANSPORT_FAILURES)
async def test_transport_failures_map_to_types(exc, kind):
    with pytest.raises(kind):
        await client(raising(exc)).reply(HISTORY, OPTIONS, lambda part: b"")


async def test_malformed_json_is_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"candidates": [')

    with pytest.raises(UnavailableError):
        await client(handler).reply(HISTORY, OPTIONS, lambda part: b"")


async def test_http_error_body_is_mapped():
    body = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "restricted key"}}
    _, handler = recording(body, 403)

    with pytest.raises(AuthError) as info:
        await client(handler).reply(HISTORY, OPTIONS, lambda part: b"")
    assert "restricted key" in info.value.user_message()
    assert "k-123" not in info.value.user_message()


async def test_the_body_is_json_and_replayed_images_are_read_once_across_turns():
    """Every turn replays the latest images; their base64 text is kept, not rebuilt from disk."""
    seen, handler = recording(OK_BODY)

    photo = ImagePart("a" * 64, "image/png")
    history = [Turn(role=Role.USER, parts=(photo, TextPart("make the sky stormy")))]
    reads: list[str] = []

    def load(part: ImagePart) -> bytes:
        reads.append(part.sha256)
        return b"photo-bytes"

    gemini = client(handler)
    await gemini.reply(history, OPTIONS, load)
    await gemini.reply(history, OPTIONS, load)
    assert reads == ["a" * 64]
    for request in seen:
        assert request.headers["content-type"] == "application/json"
        inline = json.loads(request.content)["contents"][0]["parts"][0]["inlineData"]
        assert inline == {"mimeType": "image/png", "data": "cGhvdG8tYnl0ZXM="}


@pytest.mark.parametrize("model", HOSTILE_MODEL_IDS)
async def test_a_malformed_model_id_sends_nothing(model: str):
    """Options built by any path: the id never reaches the URL (``../../v1/foo`` once POSTed /v1/foo)."""
    seen, handler = recording(OK_BODY)

    with pytest.raises(BadRequestError, match="nothing was sent"):
        await client(handler).reply(HISTORY, GenerationOptions(model=model), lambda part: b"")
    assert seen == []


async def test_a_key_the_error_echoes_is_hidden():
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "key k-123 is not valid"}}
    _, handler = recording(body, 400)

    with pytest.raises(BadRequestError) as info:
        await client(handler).reply(HISTORY, OPTIONS, lambda part: b"")
    assert info.value.detail == "400 INVALID_ARGUMENT: key [key hidden] is not valid"


async def test_the_next_request_replays_an_answer_image_as_it_came_without_reading_it_back():
    """The answer's base64 text is kept by its content address: replaying the image costs no
    read from the blob store and no encoding."""
    seen, handler = recording(OK_BODY)
    gemini = client(handler)
    reply = await gemini.reply(HISTORY, OPTIONS, lambda part: b"")
    image = reply.final_image()
    answer = Turn(
        Role.ASSISTANT,
        (ImagePart(image.sha256, image.mime_type, role=ImageRole.ANSWER),),
        provider="gemini",
        model=OPTIONS.model,
    )
    follow_up = Turn(Role.USER, (TextPart("now in blue"),))

    def no_reads(part: ImagePart) -> bytes:
        raise AssertionError(f"read {part.sha256[:12]} back")

    await gemini.reply([*HISTORY, answer, follow_up], OPTIONS, no_reads)
    replayed = json.loads(seen[1].content)["contents"][1]["parts"]
    assert replayed == [{"inlineData": {"mimeType": "image/png", "data": "aW1n"}}]
    assert image.sha256 == hashlib.sha256(b"img").hexdigest()
