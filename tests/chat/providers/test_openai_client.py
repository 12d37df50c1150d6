"""OpenAIImagesClient over httpx.MockTransport: URL, headers, multipart body, and failures mapped."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from chat.domain import (
    GenerationOptions,
    ImagePart,
    ImageRole,
    OpenAIOptions,
    Role,
    TextPart,
    Turn,
)
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    MissingKeyError,
    RateLimitedError,
    UnavailableError,
)
from chat.providers.openai import OpenAIImagesClient
from tests.chat.test_options import HOSTILE_MODEL_IDS
from tests.fakes import TRANSPORT_FAILURES, raising, recording
from tests.pictures import png

# A comment chunk in the previous output: any re-encoding would change its bytes.
PREVIOUS_BYTES = png((200, 30, 30, 255), (48, 32), mode="RGBA", comment="made by gemini")
UPLOAD_BYTES = png((0, 0, 255, 255), (16, 16), mode="RGBA")
MASK_BYTES = png((0, 0, 0, 0), (12, 8), mode="RGBA")
STORE = {hashlib.sha256(data).hexdigest(): data for data in (PREVIOUS_BYTES, UPLOAD_BYTES, MASK_BYTES)}
PREVIOUS = ImagePart(hashlib.sha256(PREVIOUS_BYTES).hexdigest(), "image/png")
UPLOAD = ImagePart(hashlib.sha256(UPLOAD_BYTES).hexdigest(), "image/png")
MASK = ImagePart(hashlib.sha256(MASK_BYTES).hexdigest(), "image/png", role=ImageRole.MASK)

EDIT_HISTORY = [
    Turn(role=Role.USER, parts=(TextPart("stormy sky"),)),
    Turn(role=Role.ASSISTANT, parts=(PREVIOUS,), provider="gemini", model="gemini-3.1-flash-image"),
    Turn(role=Role.USER, parts=(TextPart("remove the car"),)),
]
TEXT_ONLY = [Turn(role=Role.USER, parts=(TextPart("a red bicycle"),))]
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
OK_BODY = {
    "created": 1,
    "data": [{"b64_json": "aW1n"}],
    "usage": {"input_tokens": 7, "output_tokens": 4160, "total_tokens": 4167},
}


def load(part: ImagePart) -> bytes:
    return STORE[part.sha256]


def client(handler, key: str | None = "sk-test-123", **kwargs) -> OpenAIImagesClient:
    """A client of the plain (JSON) answer; test_openai_stream.py has the streamed one."""
    http = httpx.Client(transport=httpx.MockTransport(handler))
    kwargs.setdefault("stream", False)
    return OpenAIImagesClient(
        http, api_key=SecretStr(key) if key else None, base_url="https://oa.test/v1/", **kwargs
    )


def multipart(request: httpx.Request) -> list[tuple[str, str | None, str | None, bytes]]:
    """(field name, filename, content type, body) of every part, parsed from the raw bytes."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    raw = request.read()
    chunks = raw.split(b"--" + boundary)
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        head, body = chunk[2:-2].split(b"\r\n\r\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        disposition = dict(item.split("=", 1) for item in headers["Content-Disposition"].split("; ")[1:])
        name = disposition["name"].strip('"')
        filename = disposition["filename"].strip('"') if "filename" in disposition else None
        parts.append((name, filename, headers.get("Content-Type"), body))
    return parts


async def test_edit_posts_the_previous_output_unmodified_as_multipart():
    seen, handler = recording(OK_BODY)
    reply = await client(handler).reply(EDIT_HISTORY, OPTIONS, load)
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://oa.test/v1/images/edits"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    parts = multipart(request)
    assert [(name, filename, ctype) for name, filename, ctype, _ in parts] == [
        ("prompt", None, None),
        ("model", None, None),
        ("n", None, None),
        ("image", "image-1.png", "image/png"),
    ]
    fields = {name: body for name, _, _, body in parts}
    assert (fields["prompt"], fields["model"], fields["n"]) == (b"remove the car", b"gpt-image-2", b"1")
    assert hashlib.sha256(fields["image"]).hexdigest() == PREVIOUS.sha256
    assert b"response_format" not in request.content
    assert reply.provider == "openai" and reply.model == "gpt-image-2"
    assert reply.final_image().data == b"img" and reply.final_image().mime_type == "image/png"
    assert (reply.usage.input_tokens, reply.usage.image_tokens, reply.usage.total_tokens) == (7, 4160, 4167)


async def test_attachment_and_mask_fitted_to_the_first_image():
    seen, handler = recording(OK_BODY)
    history = [
        *EDIT_HISTORY[:2],
        Turn(role=Role.USER, parts=(UPLOAD, MASK, TextPart("put this in the corner"))),
    ]
    options = GenerationOptions(
        model="gemini-3.1-flash-image",
        openai=OpenAIOptions(
            model="gpt-image-1.5", quality="high", input_fidelity="high", output_format="webp"
        ),
    )
    reply = await client(handler, safety_identifier="user-42").reply(history, options, load)
    parts = multipart(seen[0])
    assert [(name, filename, ctype) for name, filename, ctype, _ in parts] == [
        ("prompt", None, None),
        ("model", None, None),
        ("n", None, None),
        ("quality", None, None),
        ("output_format", None, None),
        ("input_fidelity", None, None),
        ("safety_identifier", None, None),
        ("image[]", "image-1.png", "image/png"),
        ("image[]", "image-2.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]
    images = [body for name, _, _, body in parts if name == "image[]"]
    assert [hashlib.sha256(b).hexdigest() for b in images] == [PREVIOUS.sha256, UPLOAD.sha256]
    fields = {name: body for name, _, _, body in parts}
    assert fields["model"] == b"gpt-image-1.5" and fields["safety_identifier"] == b"user-42"
    mask = Image.open(io.BytesIO(fields["mask"]))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (48, 32))
    assert mask.getchannel("A").getextrema() == (0, 0)
    assert reply.model == "gpt-image-1.5"
    assert reply.final_image().mime_type == "image/webp"


async def test_no_image_uses_generations_json():
    seen, handler = recording(OK_BODY)
    options = GenerationOptions(model="g", openai=OpenAIOptions(size="1024x1536", input_fidelity="low"))
    await client(handler, default_model="gpt-image-1-mini").reply(TEXT_ONLY, options, load)
    request = seen[0]
    assert str(request.url) == "https://oa.test/v1/images/generations"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert json.loads(request.content) == {
        "prompt": "a red bicycle",
        "model": "gpt-image-1-mini",
        "n": 1,
        "size": "1024x1536",
    }


async def test_missing_key_fails_before_any_request():
    handler = raising(AssertionError("no request expected"))

    def no_loading(part: ImagePart) -> bytes:
        raise AssertionError("nothing should be loaded")

    with pytest.raises(MissingKeyError) as info:
        await client(handler, key=None).reply(EDIT_HISTORY, OPTIONS, no_loading)
    assert isinstance(info.value, AuthError)
    assert "OPENAI_API_KEY=" in info.value.user_message() and "nothing was sent" in info.value.user_message()
    assert client(handler, key=None).configured is False
    assert client(handler).configured is True


@pytest.mark.parametrize(("exc", "kind"), TRANSPORT_FAILURES)
async def test_transport_failures_map_to_types(exc, kind):
    with pytest.raises(kind) as info:
        await client(raising(exc)).reply(EDIT_HISTORY, OPTIONS, load)
    assert info.value.provider == "openai"


async def test_rate_limit_reads_retry_after_header():
    _, handler = recording(
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
        429,
        headers={"retry-after": "20"},
    )
    with pytest.raises(RateLimitedError) as info:
        await client(handler).reply(TEXT_ONLY, OPTIONS, load)
    assert info.value.retry_after == 20.0
    assert info.value.detail == "429 rate_limit_exceeded: Rate limit reached"


async def test_moderation_block_is_blocked():
    body = {"error": {"message": "Rejected by the safety system", "type": "x", "code": "moderation_blocked"}}
    _, handler = recording(body, 400)
    with pytest.raises(BlockedError) as info:
        await client(handler).reply(EDIT_HISTORY, OPTIONS, load)
    assert info.value.reason == "moderation_blocked"


async def test_invalid_key_error_never_shows_the_key():
    body = {
        "error": {
            "message": "Incorrect API key provided: sk-test-123. You can find your API key in the dashboard.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    _, handler = recording(body, 401)
    with pytest.raises(AuthError) as info:
        await client(handler).reply(TEXT_ONLY, OPTIONS, load)
    assert "sk-test-123" not in info.value.user_message()
    assert "Incorrect API key provided" in info.value.user_message()


async def test_malformed_json_is_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"data": [')

    with pytest.raises(UnavailableError):
        await client(handler).reply(TEXT_ONLY, OPTIONS, load)


async def test_server_error_without_json_is_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"<html>Bad gateway</html>")

    with pytest.raises(UnavailableError) as info:
        await client(handler).reply(TEXT_ONLY, OPTIONS, load)
    assert info.value.status_code == 502


@pytest.mark.parametrize("model", HOSTILE_MODEL_IDS)
@pytest.mark.parametrize("history", [EDIT_HISTORY, TEXT_ONLY], ids=["edit", "generation"])
async def test_a_malformed_model_id_sends_nothing(model: str, history):
    seen, handler = recording(OK_BODY)

    def no_loading(part: ImagePart) -> bytes:
        raise AssertionError("nothing should be loaded")

    options = GenerationOptions(model="gemini-3.1-flash-image", openai=OpenAIOptions(model=model))
    with pytest.raises(BadRequestError, match="nothing was sent"):
        await client(handler).reply(history, options, no_loading)
    assert seen == []


async def test_a_malformed_default_model_sends_nothing():
    seen, handler = recording(OK_BODY)
    with pytest.raises(BadRequestError):
        await client(handler, default_model="../../v1/foo").reply(TEXT_ONLY, OPTIONS, load)
    assert seen == []


async def test_the_key_the_call_used_is_hidden_wherever_the_error_quotes_it():
    body = {
        "error": {"message": "The key my-key-2026 was disabled by its organization.", "code": "key_disabled"}
    }
    _, handler = recording(body, 401)
    with pytest.raises(AuthError) as info:
        await client(handler, key="my-key-2026").reply(TEXT_ONLY, OPTIONS, load)
    assert info.value.detail == "401 key_disabled: The key [key hidden] was disabled by its organization"
    assert "my-key-2026" not in str(info.value)
