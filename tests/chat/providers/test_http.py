"""The shared HTTP edge: keys hidden from provider errors, model ids checked before anything is sent."""

from __future__ import annotations

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
from chat.providers.http import checked_model, read_reply
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


async def test_read_reply_hides_the_key_the_call_used_from_the_error() -> None:
    response = httpx.Response(401, json={"error": {"message": "the key visitor-key-Wq9Z is not valid here"}})
    with pytest.raises(AuthError) as info:
        await read_reply(
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
