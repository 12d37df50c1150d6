"""The shared HTTP edge: keys hidden from provider errors, model ids checked before anything is sent,
and the threads provider calls block in."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from chat.errors import (
    KEY_HIDDEN,
    AuthError,
    BadRequestError,
    BlockedError,
    NoImageError,
    ProviderError,
    RateLimitedError,
    redact,
)
from chat.providers.http import (
    CallThreads,
    SentOnce,
    checked_model,
    in_worker,
    read_reply,
)
from chat.providers.model_ids import MODEL_ID_RULE
from tests.chat.test_options import HOSTILE_MODEL_IDS, REAL_MODEL_IDS

OPENAI_401 = "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys."
GOOGLE_KEY = "AIzaSyD3xampleExampleExampleExample123"


@pytest.mark.parametrize(
    "echoed",
    [
        "inval*******4444",  # the emulator's echo of "invalid-key-4444"
        "sk-proj-" + "*" * 150 + "MxYA",  # the real API's, 2026
        "sk-PMafP***************************************E873",
        "https://*************lETQ",
        "Toxic",  # short keys come back whole
        "sk-test-123",
    ],
)
def test_openai_echo_of_a_rejected_key_is_hidden(echoed: str) -> None:
    hidden = redact(OPENAI_401.format(echoed))
    assert hidden == OPENAI_401.format(KEY_HIDDEN)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {GOOGLE_KEY} is not allowed", f"key {KEY_HIDDEN} is not allowed"),
        ("your key sk-proj-abc*****wxyz was revoked", f"your key {KEY_HIDDEN} was revoked"),
        ("masked inval****4444 here", f"masked {KEY_HIDDEN} here"),
        ("sk-live-0123456789abcdef", KEY_HIDDEN),
    ],
)
def test_key_like_strings_anywhere_are_hidden(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "API key not valid. Please pass a valid API key.",
        "503 UNAVAILABLE: The model is overloaded. Please try again later",
        "Rate limit reached for gpt-image-2 in organization org-x on images per minute (IPM): Limit 5, Used 5",
        "models/gemini-2.5-flash-image is not found for API version v1beta",
        "task-based risk: 2 * 3 = 6",
    ],
)
def test_ordinary_provider_messages_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_exact_key_is_hidden_wherever_it_appears() -> None:
    assert redact("the key my-own-key-9 was rejected (my-own-key-9)", "my-own-key-9") == (
        f"the key {KEY_HIDDEN} was rejected ({KEY_HIDDEN})"
    )


def test_redaction_is_idempotent() -> None:
    once = redact(OPENAI_401.format("inval*******4444"), "invalid-key-4444")
    assert redact(once, "invalid-key-4444") == once


@pytest.mark.parametrize(
    "error",
    [
        ProviderError("openai", OPENAI_401.format("inval*******4444")),
        AuthError("openai", OPENAI_401.format("inval*******4444"), status_code=401),
        BadRequestError("gemini", f"400 INVALID_ARGUMENT: bad key {GOOGLE_KEY}"),
        RateLimitedError("openai", "429: sk-proj-****abcd over quota", retry_after=2),
        BlockedError("openai", "moderation for sk-proj-****abcd", reason="moderation_blocked"),
        NoImageError("gemini", f"text only, {GOOGLE_KEY}"),
    ],
)
def test_every_provider_error_hides_keys_in_detail_message_and_str(error: ProviderError) -> None:
    assert KEY_HIDDEN in error.detail
    for text in (error.detail, error.user_message(), str(error), repr(error)):
        assert "4444" not in text and "abcd" not in text and GOOGLE_KEY not in text


def test_hide_takes_out_the_key_a_call_used() -> None:
    error = AuthError("openai", "Incorrect API key provided: Toxic-but-long, really")
    error.hide("Toxic-but-long")
    assert "Toxic" not in error.detail and "Toxic" not in str(error) and "Toxic" not in error.user_message()


def test_read_reply_hides_the_key_the_call_used_from_the_error() -> None:
    response = httpx.Response(401, json={"error": {"message": "the key visitor-key-Wq9Z is not valid here"}})
    with pytest.raises(AuthError) as info:
        read_reply(
            response,
            "openai",
            api_key="visitor-key-Wq9Z",
            error=lambda body: AuthError("openai", body["error"]["message"], status_code=401),
            parse=lambda body: pytest.fail("not parsed"),
        )
    assert info.value.detail == f"the key {KEY_HIDDEN} is not valid here"
    assert "Wq9Z" not in str(info.value)


@pytest.mark.parametrize("model", REAL_MODEL_IDS)
def test_checked_model_passes_real_ids(model: str) -> None:
    assert checked_model("gemini", model) == model


@pytest.mark.parametrize("model", HOSTILE_MODEL_IDS)
def test_checked_model_refuses_hostile_ids_as_a_bad_request(model: str) -> None:
    with pytest.raises(BadRequestError) as info:
        checked_model("openai", model)
    assert info.value.provider == "openai" and info.value.status_code is None
    # The same sentence for every id: it is never echoed, it may be anything.
    assert info.value.user_message() == (
        f"OpenAI could not accept this request: the model id is malformed (use {MODEL_ID_RULE}); nothing was sent"
    )


# --- the threads provider calls block in ------------------------------------------------------


@pytest.fixture
def threads():
    threads = CallThreads(2, name="test-call")
    yield threads
    threads.close()


async def test_a_call_runs_in_one_of_the_daemon_threads_and_hands_back_its_result_or_error(threads) -> None:
    ran_in = await in_worker(threads, threading.current_thread)
    assert ran_in.name.startswith("test-call-") and ran_in.daemon
    assert ran_in is not threading.current_thread()

    def fails() -> None:
        raise AuthError("openai", "no")

    with pytest.raises(AuthError):
        await in_worker(threads, fails)


async def test_no_more_calls_run_at_once_than_there_are_threads(threads) -> None:
    release = threading.Event()
    running: list[int] = []

    def call(n: int) -> int:
        running.append(n)
        release.wait(5)
        return n

    calls = [asyncio.ensure_future(in_worker(threads, lambda n=n: call(n))) for n in range(3)]
    await asyncio.sleep(0.2)
    assert sorted(running) == [0, 1]  # the third waits for a thread
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2]


async def test_a_call_cancelled_before_a_thread_takes_it_never_runs(threads) -> None:
    release = threading.Event()
    ran: list[str] = []
    busy = [asyncio.ensure_future(in_worker(threads, lambda: release.wait(5))) for _ in range(2)]
    await asyncio.sleep(0.1)
    waiting = asyncio.ensure_future(in_worker(threads, lambda: ran.append("late")))
    await asyncio.sleep(0.1)
    waiting.cancel()
    await asyncio.sleep(0.1)  # the cancel reaches the queued call through the loop
    release.set()
    await asyncio.gather(*busy)
    await in_worker(threads, lambda: None)  # the queue has moved past the cancelled call
    assert ran == [] and waiting.cancelled()


async def test_closed_threads_end_and_take_no_more_calls() -> None:
    threads = CallThreads(2, name="test-closed")
    await in_worker(threads, lambda: None)
    threads.close()
    for thread in [t for t in threading.enumerate() if t.name.startswith("test-closed-")]:
        thread.join(5)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await in_worker(threads, lambda: None)


def test_a_body_sent_once_goes_out_whole_with_its_length_and_is_not_kept() -> None:
    """The provider gets the exact bytes, not chunked; once written, the body holds nothing (its MBs are freed)."""
    received: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={})

    data = b'{"contents": "' + b"A" * 100_000 + b'"}'
    body = SentOnce(data)
    with httpx.Client(transport=httpx.MockTransport(provider)) as http:
        http.post("https://provider.test/v1", content=body, headers=body.headers)
    [request] = received
    assert request.content == data
    assert request.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in request.headers
    with pytest.raises(RuntimeError, match="sent once"):
        list(body)
