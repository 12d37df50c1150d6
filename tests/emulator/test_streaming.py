"""``streamGenerateContent``: the chunks of the ``generateContent`` answer, and the stream faults."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator.faults import Fault, parse_fault
from tests.emulator.fixtures import EmulatorControl
from tests.emulator.test_emulator import FLASH, PRO, client, edit_request  # noqa: F401 - a fixture

THOUGHTS = {"thinkingConfig": {"includeThoughts": True}}


def events(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\r\n\r\n")
    blocks = body.split(b"\r\n\r\n")[:-1]
    assert all(block.startswith(b"data: ") for block in blocks)
    return [orjson.loads(block[6:]) for block in blocks]


def joined_parts(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]


@pytest.mark.parametrize("model", [PRO, FLASH])
async def test_the_stream_is_the_answer_in_one_part_chunks(client: httpx.AsyncClient, model: str) -> None:  # noqa: F811
    body = edit_request(**THOUGHTS)
    whole = (
        await client.post(
            f"/v1beta/models/{model}:generateContent", json=body, headers={"x-goog-api-key": "k"}
        )
    ).json()
    streamed = await client.post(
        f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=body, headers={"x-goog-api-key": "k"}
    )
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    chunks = events(streamed.content)
    assert all(len(c["candidates"][0]["content"]["parts"]) == 1 for c in chunks)
    assert all(c["responseId"] == whole["responseId"] and c["modelVersion"] == model for c in chunks)
    assert [("usageMetadata" in c, "finishReason" in c["candidates"][0]) for c in chunks] == [
        (False, False)
    ] * (len(chunks) - 1) + [(True, True)]
    assert chunks[-1]["usageMetadata"] == whole["usageMetadata"]

    parts = joined_parts(chunks)
    expected = whole["candidates"][0]["content"]["parts"]
    assert [p for p in parts if "inlineData" in p] == [p for p in expected if "inlineData" in p]
    thought_pieces = [p["text"] for p in parts if p.get("thought") and "text" in p]
    assert len(thought_pieces) > 1 and "".join(thought_pieces) == expected[0]["text"]
    text_signature = next(p["thoughtSignature"] for p in expected if "text" in p and "thoughtSignature" in p)
    (carrier,) = [p for p in parts if "text" in p and "thoughtSignature" in p]
    assert carrier["thoughtSignature"] == text_signature
    assert (carrier["text"] == "") is (model == PRO)  # Pro: on an empty-text part of its own


async def test_without_alt_the_chunks_come_as_one_json_array(client: httpx.AsyncClient) -> None:  # noqa: F811
    url = f"/v1beta/models/{FLASH}:streamGenerateContent"
    sse = await client.post(url + "?alt=sse", json=edit_request(), headers={"x-goog-api-key": "k"})
    array = await client.post(url, json=edit_request(), headers={"x-goog-api-key": "k"})
    assert array.headers["content-type"] == "application/json" and array.json() == events(sse.content)


async def test_a_whole_answer_cannot_fail_half_way(client: httpx.AsyncClient) -> None:  # noqa: F811
    url = f"/v1beta/models/{FLASH}:generateContent"
    error = await client.post(
        url, json=edit_request("a cat [fault:stream_error]"), headers={"x-goog-api-key": "k"}
    )
    assert error.status_code == 503 and error.json()["error"]["status"] == "UNAVAILABLE"
    cut = await client.post(
        url, json=edit_request("a cat [fault:stream_cut]"), headers={"x-goog-api-key": "k"}
    )
    assert cut.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


async def test_an_error_event_follows_the_first_draft(client: httpx.AsyncClient) -> None:  # noqa: F811
    body = edit_request("a cat [fault:stream_error]", **THOUGHTS)
    response = await client.post(
        f"/v1beta/models/{PRO}:streamGenerateContent?alt=sse", json=body, headers={"x-goog-api-key": "k"}
    )
    *answer, error = events(response.content)
    assert response.status_code == 200 and error == {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
    last = answer[-1]["candidates"][0]["content"]["parts"][0]
    assert last["thought"] is True and "inlineData" in last


def test_a_cut_stream_drops_the_connection_after_the_first_draft(emulator: EmulatorControl) -> None:
    body = edit_request("a cat [fault:stream_cut]", **THOUGHTS)
    received = bytearray()
    url = f"{emulator.url}/v1beta/models/{PRO}:streamGenerateContent?alt=sse"
    with (
        httpx.stream("POST", url, json=body, headers={"x-goog-api-key": "k"}) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for data in response.iter_bytes():
            received += data
    chunks = events(bytes(received))
    assert "inlineData" in joined_parts(chunks)[-1] and joined_parts(chunks)[-1]["thought"] is True
    assert emulator.requests()[0]["stream"] == "cut"


def test_drip_is_a_gemini_wait() -> None:
    assert parse_fault("drip:0.5") == Fault("drip", 0.5)
    assert parse_fault("gemini:drip:2").spec == "gemini:drip:2"
    assert not Fault("drip", 1).applies_to("openai")
    with pytest.raises(ValueError, match="does not exist for openai"):
        parse_fault("openai:drip:1")


def test_each_draft_sent_is_noted_with_its_sha256_and_the_wall_clock(emulator: EmulatorControl) -> None:
    body = edit_request("a cat", **THOUGHTS)
    before = time.time()
    response = httpx.post(
        f"{emulator.url}/v1beta/models/{PRO}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": "k"},
    )
    after = time.time()
    (draft,) = [p for p in joined_parts(events(response.content)) if p.get("thought") and "inlineData" in p]
    (entry,) = emulator.requests()
    (noted,) = entry["drafts"]
    assert noted["sha256"] == hashlib.sha256(base64.b64decode(draft["inlineData"]["data"])).hexdigest()
    assert before <= noted["sent_at"] <= after
    flash = httpx.post(
        f"{emulator.url}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": "k"},
    )
    assert flash.status_code == 200 and emulator.requests()[1]["drafts"] == []
