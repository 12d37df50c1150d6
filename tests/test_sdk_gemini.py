"""The official ``google-genai`` SDK talks to the provider emulator.

This is the evidence that the emulator speaks the real wire format: the SDK builds
requests (mixed casing, URL-safe base64) and parses answers exactly as it would
against Google, including chat history replay with thought signatures and the
mapping of error envelopes to ``ClientError`` / ``ServerError``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from tests.emulator import read_provenance
from tests.emulator.fixtures import EmulatorControl
from tests.pictures import encode, ramp

MODEL = "gemini-3.1-flash-image"
SIZE = (320, 240)


def _image_parts(response: types.GenerateContentResponse) -> list[types.Part]:
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts
    return [p for p in content.parts if p.inline_data is not None and not p.thought]


@pytest.fixture
def client(emulator_url: str) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=emulator_url, api_version="v1beta")
    with genai.Client(api_key="test-key", http_options=options) as sdk_client:
        yield sdk_client


def test_multi_turn_chat_replays_signatures(client: genai.Client, emulator: EmulatorControl) -> None:
    upload = encode(ramp(SIZE))
    chat = client.chats.create(
        model=MODEL, config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])
    )
    first = chat.send_message([types.Part.from_bytes(data=upload, mime_type="image/png"), "make it warmer"])
    (first_image,) = _image_parts(first)
    assert first_image.inline_data is not None and first_image.inline_data.mime_type == "image/png"
    assert first_image.inline_data.data and first_image.thought_signature

    second = chat.send_message("now add a red border")
    third = chat.send_message("and make the sky purple")
    assert _image_parts(second) and _image_parts(third)

    requests = emulator.requests()
    assert [r["status"] for r in requests] == [200, 200, 200]
    assert requests[0]["headers"]["x-goog-api-key"] == "test-key"
    contents = requests[2]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    for sent, received in ((contents[1], first), (contents[3], second)):
        assert received.candidates and received.candidates[0].content
        expected = [p.thought_signature for p in received.candidates[0].content.parts or []]
        replayed = [base64.urlsafe_b64decode(p["thoughtSignature"]) for p in sent["parts"]]
        assert replayed == expected and all(expected)

    (final,) = _image_parts(third)
    assert final.inline_data is not None and final.inline_data.data
    provenance = read_provenance(final.inline_data.data)
    assert provenance["contents"] == 5
    assert provenance["prompt"] == "and make the sky purple"
    assert provenance["input_sha256"][0] == hashlib.sha256(upload).hexdigest()


def test_history_without_signature_is_a_client_error(client: genai.Client) -> None:
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="draw a lighthouse")]),
        types.Content(
            role="model", parts=[types.Part.from_bytes(data=encode(ramp(SIZE)), mime_type="image/png")]
        ),
        types.Content(role="user", parts=[types.Part.from_text(text="make it night")]),
    ]
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents=history)
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == (
        "Image part is missing a thought_signature in content position 2, part position 1."
    )


def test_queued_503_is_a_server_error(client: genai.Client, emulator: EmulatorControl) -> None:
    emulator.queue_faults("503")
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=MODEL, contents="a cat")
    assert caught.value.code == 503
    assert caught.value.message == "The model is overloaded. Please try again later."
    assert _image_parts(client.models.generate_content(model=MODEL, contents="a cat"))


def test_rate_limit_details_reach_the_sdk(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="a cat [fault:429]")
    assert caught.value.code == 429
    details = caught.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in details


def test_image_config_sets_the_output_size(client: genai.Client, emulator: EmulatorControl) -> None:
    config = types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K"),
    )
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_bytes(data=encode(ramp(SIZE)), mime_type="image/png"), "widen it"],
        config=config,
    )
    (image,) = _image_parts(response)
    assert image.inline_data is not None and image.inline_data.data
    with Image.open(io.BytesIO(image.inline_data.data)) as opened:
        assert opened.size == (2736, 1536)
    (request,) = emulator.requests()
    assert request["body"]["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_pro_thoughts_and_jpeg_output(client: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    response = client.models.generate_content(model="gemini-3-pro-image", contents="a harbour", config=config)
    assert response.candidates and response.candidates[0].content
    parts = response.candidates[0].content.parts or []
    assert [bool(p.thought) for p in parts] == [True, True, False, False]
    (image,) = _image_parts(response)
    assert image.inline_data is not None and image.inline_data.mime_type == "image/jpeg"
    assert response.usage_metadata and response.usage_metadata.thoughts_token_count
