"""GeminiClient streaming (``streamGenerateContent?alt=sse``), over MockTransport and the emulator:
the joined answer is the non-streamed one, progress comes in order, failures map as today, Stop ends it."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading

import httpx
import orjson
import pytest
from pydantic import SecretStr

from chat.domain import GenerationOptions, Phase, Progress, Role, TextPart, Turn
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    NoImageError,
    RateLimitedError,
    UnavailableError,
)
from chat.providers.gemini import GeminiClient
from chat.providers.http import CallThreads
from tests.emulator.app import create_app
from tests.emulator.server import serve_in_thread

PRO = GenerationOptions(model="gemini-3-pro-image")
FLASH = GenerationOptions(model="gemini-3.1-flash-image")
HISTORY = [Turn(role=Role.USER, parts=(TextPart("a red bicycle"),))]
IMAGE = base64.b64encode(b"final-image").decode()
DRAFT = base64.b64encode(b"draft-image").decode()


def no_image(part: object) -> bytes:
    raise AssertionError("no image to load")


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


def chunk(*parts: dict, **candidate: object) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": list(parts)}, "index": 0, **candidate}]}


def mock(body: bytes, status: int = 200, seen: list[httpx.Request] | None = None) -> GeminiClient:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return GeminiClient(http, api_key=SecretStr("k-123"), base_url="https://gl.test/")


# --- over MockTransport: the joining rules, one literal stream at a time ----------------------


async def test_pieces_join_and_a_signature_on_an_empty_part_joins_its_text():
    seen: list[httpx.Request] = []
    body = sse(
        {**chunk({"text": "Plan", "thought": True}), "promptFeedback": {}},
        chunk({"text": "ning", "thought": True}),
        chunk({"inlineData": {"mimeType": "image/jpeg", "data": DRAFT}, "thought": True}),
        chunk({"text": "Here "}),
        chunk({"text": "it is"}),
        chunk({"text": "", "thoughtSignature": "c2lnLXQ="}),
        {
            **chunk(
                {"inlineData": {"mimeType": "image/png", "data": IMAGE}, "thoughtSignature": "c2lnLWk="},
                finishReason="STOP",
            ),
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1120},
            "modelVersion": "gemini-3-pro-image",
            "responseId": "rid",
        },
    )
    snapshots: list[Progress] = []
    reply = await mock(body, seen=seen).reply(HISTORY, PRO, no_image, progress=snapshots.append)

    assert (
        str(seen[0].url) == "https://gl.test/v1beta/models/gemini-3-pro-image:streamGenerateContent?alt=sse"
    )
    assert seen[0].headers["x-goog-api-key"] == "k-123"
    assert orjson.loads(seen[0].content)["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    thought, draft, text, image = reply.parts
    assert thought == TextPart("Planning", thought=True)
    assert draft.thought and draft.data == b"draft-image" and not draft.provider_metadata
    assert text.text == "Here it is" and text.provider_metadata == {
        "gemini": {"thoughtSignature": "c2lnLXQ="}
    }
    assert image.data == b"final-image" and image.provider_metadata == {
        "gemini": {"thoughtSignature": "c2lnLWk="}
    }
    assert reply.response_id == "rid" and reply.usage.output_tokens == 1120 and reply.finish_reason == "STOP"

    assert [s.phase for s in snapshots] == [
        Phase.WAITING,
        Phase.THINKING,
        Phase.THINKING,
        Phase.DRAFT,
        Phase.WRITING,
        Phase.WRITING,
        Phase.FINAL,
    ]
    assert [s.thoughts for s in snapshots[1:3]] == ["Plan", "Planning"]
    assert [s.text for s in snapshots[4:6]] == ["Here ", "Here it is"]
    assert snapshots[-1].drafts == snapshots[3].drafts and snapshots[3].drafts[0].data == b"draft-image"
    assert all(s.drafts_expected is None and s.provider == "gemini" for s in snapshots)
    assert all(not d.provider_metadata for s in snapshots for d in s.drafts)


async def test_a_signature_on_the_last_piece_closes_the_part():
    body = sse(
        chunk({"text": "Here "}),
        chunk({"text": "it is", "thoughtSignature": "c2ln"}),
        chunk({"text": "Also this"}),
        chunk(
            {"inlineData": {"mimeType": "image/png", "data": IMAGE}, "thoughtSignature": "aW1n"},
            finishReason="STOP",
        ),
    )
    reply = await mock(body).reply(HISTORY, FLASH, no_image)
    assert [p.text for p in reply.parts if isinstance(p, TextPart)] == ["Here it is", "Also this"]
    assert reply.parts[0].provider_metadata == {"gemini": {"thoughtSignature": "c2ln"}}
    assert not reply.parts[1].provider_metadata


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (sse({"promptFeedback": {"blockReason": "SAFETY"}}), BlockedError),
        (sse({"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}]}), BlockedError),
        (sse(chunk({"text": "no"}, finishReason="MISSING_THOUGHT_SIGNATURE")), BadRequestError),
        (
            sse(chunk({"text": "I can't draw that", "thoughtSignature": "c2ln"}, finishReason="STOP")),
            NoImageError,
        ),
        (
            sse(chunk({"text": "Here"}), {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}),
            RateLimitedError,
        ),
        (sse(chunk({"text": "Here"}), {"error": {"code": 500, "message": "internal"}}), UnavailableError),
        (sse(chunk({"text": "Here"})), UnavailableError),  # ended with no finishReason: cut
        (b"", UnavailableError),  # a 200 and nothing
        (b'data: {"candidates": [\r\n\r\n', UnavailableError),  # an event that is not JSON
        (sse(chunk({"text": "Here"})) + b'data: {"candi', UnavailableError),  # cut inside an event
    ],
)
async def test_stream_failures_map_to_todays_errors(body, error):
    with pytest.raises(error):
        await mock(body).reply(HISTORY, FLASH, no_image)


async def test_an_error_status_before_any_event_is_mapped_and_hides_the_key():
    body = orjson.dumps(
        {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "key k-123 restricted"}}
    )
    with pytest.raises(AuthError) as info:
        await mock(body, status=403).reply(HISTORY, FLASH, no_image)
    assert "k-123" not in info.value.user_message() and "k-123" not in str(info.value)


# --- against the emulator over real HTTP ----------------------------------------------------


@pytest.fixture
def stream_and_whole(emulator):
    with httpx.Client() as http:
        yield (
            GeminiClient(http, api_key=SecretStr("test-key"), base_url=emulator.url, timeout_s=5),
            GeminiClient(
                http,
                api_key=SecretStr("test-key"),
                base_url=emulator.url,
                timeout_s=5,
                stream=False,
                thoughts=True,
            ),
        )


@pytest.mark.parametrize("options", [PRO, FLASH], ids=["pro", "flash"])
async def test_streamed_reply_equals_the_non_streamed_one(stream_and_whole, emulator, options):
    streamed, whole = stream_and_whole
    snapshots: list[Progress] = []
    first = await streamed.reply(HISTORY, options, no_image, progress=snapshots.append)
    second = await whole.reply(HISTORY, options, no_image)
    assert first == second  # every part, its data, thought flag and signature; usage, ids
    assert [p.provider_metadata for p in first.parts] == [p.provider_metadata for p in second.parts]
    assert sum(bool(p.provider_metadata) for p in first.parts) == 2  # the signed text and image
    paths = [r["path"].rsplit(":", 1)[1] for r in emulator.requests()]
    assert paths == ["streamGenerateContent", "generateContent"]
    phases = [s.phase for s in snapshots]
    expected = [
        Phase.WAITING,
        Phase.THINKING,
        *([Phase.DRAFT] if options is PRO else []),
        Phase.WRITING,
        Phase.FINAL,
    ]
    assert list(dict.fromkeys(phases)) == expected  # in this order, each phase at least once
    assert snapshots[-1].thoughts == "".join(
        p.text for p in first.parts if isinstance(p, TextPart) and p.thought
    )
    assert snapshots[-1].text == "Here is the generated image."


async def test_megabyte_signatures_come_back_byte_exact():
    with serve_in_thread(create_app(signature_filler=1_000_000)) as url, httpx.Client() as http:
        streamed = GeminiClient(http, api_key=SecretStr("k"), base_url=url, timeout_s=10)
        whole = GeminiClient(
            http, api_key=SecretStr("k"), base_url=url, timeout_s=10, stream=False, thoughts=True
        )
        first = await streamed.reply(HISTORY, PRO, no_image)
        second = await whole.reply(HISTORY, PRO, no_image)
    signatures = [
        p.provider_metadata["gemini"]["thoughtSignature"] for p in first.parts if p.provider_metadata
    ]
    assert len(signatures) == 2 and all(len(s) > 1_300_000 for s in signatures)
    assert signatures == [
        p.provider_metadata["gemini"]["thoughtSignature"] for p in second.parts if p.provider_metadata
    ]


@pytest.mark.parametrize(
    ("fault", "error"),
    [("stream_cut", UnavailableError), ("stream_error", UnavailableError), ("block", BlockedError)],
)
async def test_stream_faults_keep_todays_errors(stream_and_whole, emulator, fault, error):
    streamed, _ = stream_and_whole
    snapshots: list[Progress] = []
    with pytest.raises(error):
        await streamed.reply(
            [Turn(role=Role.USER, parts=(TextPart(f"a cat [fault:{fault}]"),))],
            PRO,
            no_image,
            progress=snapshots.append,
        )
    if fault != "block":  # struck after the first draft: it was shown, nothing of it is kept
        assert snapshots[-1].phase is Phase.DRAFT and len(snapshots[-1].drafts) == 1
        assert emulator.requests()[0]["stream"] == ("cut" if fault == "stream_cut" else "complete")


async def test_stop_mid_stream_ends_the_thread_and_closes_the_socket(caplog):
    """The user presses Stop while the emulator waits between chunks: the read ends at once."""
    app = create_app()
    threads = CallThreads(1)
    loop = asyncio.get_running_loop()
    thinking = asyncio.Event()

    def progress(snapshot: Progress) -> None:
        if snapshot.phase is Phase.THINKING:
            loop.call_soon_threadsafe(thinking.set)

    try:
        with serve_in_thread(app) as url, httpx.Client() as http:
            client = GeminiClient(http, api_key=SecretStr("k"), base_url=url, threads=threads, timeout_s=60)
            history = [Turn(role=Role.USER, parts=(TextPart("a cat [fault:drip:60]"),))]
            call = asyncio.create_task(client.reply(history, PRO, no_image, progress=progress))
            await asyncio.wait_for(thinking.wait(), 5)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert (
                await asyncio.wait_for(threads.run(threading.current_thread), 1)
                is not threading.main_thread()
            )
            assert await asyncio.to_thread(app.state.emulator.stream_ends.get, timeout=2) == "disconnected"
    finally:
        threads.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
