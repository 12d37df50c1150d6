"""The official ``google-genai`` SDK streams from the provider emulator (``generate_content_stream``,
``send_message_stream``): the evidence that the emulator's ``streamGenerateContent?alt=sse`` speaks
the real protocol, chunks, thought images, signatures and the replay of a streamed chat included.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types

from tests.emulator.fixtures import EmulatorControl
from tests.pictures import encode, ramp

PRO = "gemini-3-pro-image"
FLASH = "gemini-3.1-flash-image"
THOUGHTS = types.GenerateContentConfig(
    response_modalities=["TEXT", "IMAGE"], thinking_config=types.ThinkingConfig(include_thoughts=True)
)


@pytest.fixture
def client(emulator_url: str) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=emulator_url, api_version="v1beta")
    with genai.Client(api_key="test-key", http_options=options) as sdk_client:
        yield sdk_client


def _parts(chunk: types.GenerateContentResponse) -> list[types.Part]:
    assert chunk.candidates and chunk.candidates[0].content
    return list(chunk.candidates[0].content.parts or [])


def test_stream_brings_thought_text_in_pieces_then_draft_then_signed_image(
    client: genai.Client, emulator: EmulatorControl
) -> None:
    upload = types.Part.from_bytes(data=encode(ramp((96, 64))), mime_type="image/png")
    chunks = list(
        client.models.generate_content_stream(model=PRO, contents=[upload, "warmer"], config=THOUGHTS)
    )

    parts = [p for chunk in chunks for p in _parts(chunk)]
    thoughts = [p for p in parts if p.thought and p.text]
    assert len(thoughts) > 1 and "".join(p.text or "" for p in thoughts).startswith("**Planning the edit**")
    (draft,) = [p for p in parts if p.thought and p.inline_data]
    assert draft.thought_signature is None
    (final,) = [p for p in parts if p.inline_data and not p.thought]
    assert final.inline_data is not None and final.inline_data.mime_type == "image/jpeg"
    assert final.thought_signature and final.inline_data.data
    assert parts.index(draft) < parts.index(final)
    answer_text = [p for p in parts if not p.thought and p.text is not None]
    assert "".join(p.text or "" for p in answer_text) == "Here is the edited image."
    assert [p.thought_signature is not None for p in answer_text][-1]  # on its own empty part (Pro)

    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata and last.usage_metadata.total_token_count
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1] if c.candidates)
    assert {c.response_id for c in chunks} == {last.response_id}
    (request,) = emulator.requests()
    assert request["path"] == f"/v1beta/models/{PRO}:streamGenerateContent"
    assert request["query"] == {"alt": "sse"} and request["stream"] == "complete"


def test_streamed_chunks_join_into_the_non_streamed_answer(client: genai.Client) -> None:
    """Same request, same answer: the stream only cuts it up (signatures on the same parts)."""
    whole = client.models.generate_content(model=FLASH, contents="a lighthouse", config=THOUGHTS)
    chunks = list(
        client.models.generate_content_stream(model=FLASH, contents="a lighthouse", config=THOUGHTS)
    )
    streamed = [p for chunk in chunks for p in _parts(chunk)]
    expected = _parts(whole)
    assert [p.inline_data.data for p in streamed if p.inline_data] == [
        p.inline_data.data for p in expected if p.inline_data
    ]
    assert [p.thought_signature for p in streamed if p.thought_signature] == [
        p.thought_signature for p in expected if p.thought_signature
    ]
    for thought in (True, False):
        joined = "".join(p.text or "" for p in streamed if p.text is not None and bool(p.thought) is thought)
        assert joined == "".join(
            p.text or "" for p in expected if p.text is not None and bool(p.thought) is thought
        )


@pytest.mark.parametrize("model", [PRO, FLASH])
def test_a_streamed_chat_replays_and_the_signatures_verify(
    client: genai.Client, emulator: EmulatorControl, model: str
) -> None:
    """The SDK keeps one model content per chunk in its history; the emulator accepts it, as the API must."""
    chat = client.chats.create(model=model, config=THOUGHTS)
    upload = types.Part.from_bytes(data=encode(ramp((96, 64))), mime_type="image/png")
    for message in ([upload, "make it warmer"], "now add a red border", "and a purple sky"):
        chunks = list(chat.send_message_stream(message))
        assert any(p.inline_data and not p.thought for chunk in chunks for p in _parts(chunk))
    requests = emulator.requests()
    assert [r["status"] for r in requests] == [200, 200, 200]
    roles = [c["role"] for c in requests[2]["body"]["contents"]]
    assert roles[0] == "user" and roles.count("user") == 3 and len(roles) > 5  # a content per chunk
    replayed = [
        base64.urlsafe_b64decode(p["thoughtSignature"])
        for c in requests[2]["body"]["contents"]
        if c["role"] == "model"
        for p in c["parts"]
        if "thoughtSignature" in p
    ]
    assert len(replayed) == 4  # two turns, a signed text and a signed image each


def test_a_tampered_streamed_signature_is_refused(client: genai.Client) -> None:
    chat = client.chats.create(model=FLASH, config=THOUGHTS)
    list(chat.send_message_stream("a cat"))
    history = chat.get_history()
    image = next(p for c in history for p in c.parts or [] if p.inline_data and not p.thought)
    assert image.thought_signature
    image.thought_signature = image.thought_signature[:-1]
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=FLASH, contents=[*history, "again"])
    assert caught.value.code == 400 and "Thought signature is not valid" in (caught.value.message or "")


def test_an_error_event_after_a_200_reaches_the_sdk(client: genai.Client) -> None:
    with pytest.raises(errors.APIError) as caught:  # noqa: PT012 - the error comes mid-iteration
        for _ in client.models.generate_content_stream(
            model=PRO, contents="a cat [fault:stream_error]", config=THOUGHTS
        ):
            pass
    assert caught.value.code == 503


def test_without_alt_sse_the_stream_is_a_json_array(emulator: EmulatorControl) -> None:
    response = httpx.post(
        f"{emulator.url}/v1beta/models/{FLASH}:streamGenerateContent",
        headers={"x-goog-api-key": "k"},
        json={"contents": [{"role": "user", "parts": [{"text": "a cat"}]}]},
    )
    chunks = orjson.loads(response.content)
    assert response.status_code == 200 and isinstance(chunks, list) and len(chunks) > 1
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in chunks[-1]
    assert all("usageMetadata" not in c for c in chunks[:-1])
