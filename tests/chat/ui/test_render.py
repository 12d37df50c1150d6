"""Stored conversation -> Chatbot messages and API transcript, checked against literal values."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from chat.domain import (
    Conversation,
    ImagePart,
    ImageRole,
    Role,
    TextPart,
    Turn,
    TurnError,
    Usage,
    frozen_metadata,
)
from chat.ui.render import pending_message, to_messages, to_transcript

MODEL = "gemini-3.1-flash-image"
SIGNATURE = "c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr"
SIGNED = frozen_metadata({"gemini": {"thoughtSignature": SIGNATURE}})
WARN = "\u26a0\ufe0f"
DOT = "\u00b7"
UNANSWERED = {
    "role": "assistant",
    "content": f"{WARN} This message has no answer yet (the request was interrupted). Press Retry.",
}


# --- builders --------------------------------------------------------------------------------


def image_path(part: ImagePart) -> Path:
    return Path("/blobs") / f"{part.sha256}.png"


def png(sha: str, metadata: dict | None = None, *, thought: bool = False) -> ImagePart:
    return ImagePart(sha, "image/png", thought=thought, provider_metadata=frozen_metadata(metadata))


def user(*parts: TextPart | ImagePart) -> Turn:
    return Turn(role=Role.USER, parts=parts)


def answer(*parts: TextPart | ImagePart, tokens: int | None = 1234, notice: str | None = None) -> Turn:
    usage = Usage(input_tokens=tokens) if tokens is not None else None
    return Turn(
        role=Role.ASSISTANT,
        parts=tuple(replace(p, role=ImageRole.ANSWER) if isinstance(p, ImagePart) else p for p in parts),
        provider="gemini",
        model=MODEL,
        finish_reason="STOP",
        notice=notice,
        usage=usage,
        options=frozen_metadata({"model": MODEL}),
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


def failed(message: str | None, kind: str = "unavailable") -> Turn:
    return Turn(
        role=Role.ASSISTANT,
        parts=(),
        provider="gemini",
        model=MODEL,
        error=TurnError(kind, message or ""),
    )


def conversation(*turns: Turn) -> Conversation:
    return Conversation(id="c-1", title="Stormy sky", turns=turns)


def render(conv: Conversation | None, working_model: str | None = None) -> list[dict]:
    return to_messages(conv, image_path, working_model=working_model)


def attribution(version: int | None = None, tokens: str | None = "1,234") -> str:
    bits = [f"v{version}"] if version else []
    bits.append(f"Gemini {MODEL}")
    if tokens:
        bits.append(f"{tokens} tokens")
    return "*" + f" {DOT} ".join(bits) + "*"


def shown(sha: str, version: int) -> dict:
    return {"path": f"/blobs/{sha}.png", "alt_text": f"Version {version}"}


# --- to_messages -----------------------------------------------------------------------------


def test_no_conversation_renders_nothing() -> None:
    assert render(None) == []


def test_empty_conversation_renders_nothing() -> None:
    assert render(conversation()) == []


def test_empty_conversation_with_a_running_call_shows_only_the_pending_message() -> None:
    assert render(conversation(), working_model=MODEL) == [pending_message(MODEL)]


def test_user_turn_shows_its_images_first_then_its_text() -> None:
    conv = conversation(user(TextPart("make the sky stormy"), png("aaa"), png("bbb")), answer())
    assert render(conv)[0] == {
        "role": "user",
        "content": [
            {"path": "/blobs/aaa.png", "alt_text": "Your image"},
            {"path": "/blobs/bbb.png", "alt_text": "Your image"},
            "make the sky stormy",
        ],
    }


def test_user_turn_with_only_an_image_has_no_text_entry() -> None:
    conv = conversation(user(png("aaa")), answer())
    assert render(conv)[0] == {
        "role": "user",
        "content": [{"path": "/blobs/aaa.png", "alt_text": "Your image"}],
    }


def test_assistant_answer_shows_text_attribution_and_the_image() -> None:
    conv = conversation(user(TextPart("stormy")), answer(TextPart("Here is a stormier sky."), png("out")))
    assert render(conv) == [
        {"role": "user", "content": ["stormy"]},
        {
            "role": "assistant",
            "content": [
                f"Here is a stormier sky.\n\n*v1 {DOT} Gemini {MODEL} {DOT} 1,234 tokens*",
                {"path": "/blobs/out.png", "alt_text": "Version 1"},
            ],
        },
    ]


def test_attribution_leaves_out_the_token_count_when_usage_has_none() -> None:
    conv = conversation(user(TextPart("go")), answer(png("out"), tokens=None))
    assert render(conv)[1] == {
        "role": "assistant",
        "content": [f"*v1 {DOT} Gemini {MODEL}*", shown("out", 1)],
    }


def test_attribution_names_unknown_provider_and_model_when_missing() -> None:
    turn = Turn(role=Role.ASSISTANT, parts=(png("out"),))
    assert render(conversation(user(TextPart("go")), turn))[1] == {
        "role": "assistant",
        "content": [f"*v1 {DOT} unknown model*", shown("out", 1)],
    }


def test_thoughts_are_a_separate_thinking_message_and_never_part_of_the_answer() -> None:
    reply = answer(
        TextPart("**Planning** darker clouds", thought=True, provider_metadata=SIGNED),
        TextPart("Considering lighting", thought=True, provider_metadata=SIGNED),
        TextPart("Done: stormier.", provider_metadata=SIGNED),
        png("out", {"gemini": {"thoughtSignature": SIGNATURE}}),
    )
    assert render(conversation(user(TextPart("stormy")), reply))[1:] == [
        {
            "role": "assistant",
            "content": "**Planning** darker clouds\n\nConsidering lighting",
            "metadata": {"title": "Thinking"},
        },
        {"role": "assistant", "content": [f"Done: stormier.\n\n{attribution(1)}", shown("out", 1)]},
    ]


def test_empty_thought_parts_do_not_produce_a_thinking_message() -> None:
    reply = answer(TextPart("", thought=True, provider_metadata=SIGNED), png("out"))
    assert render(conversation(user(TextPart("go")), reply))[1:] == [
        {"role": "assistant", "content": [attribution(1), shown("out", 1)]}
    ]


def test_thought_images_are_not_shown_when_a_final_image_exists() -> None:
    reply = answer(png("draft-1", thought=True), png("final"), png("draft-2", thought=True))
    messages = render(conversation(user(TextPart("go")), reply))
    assert messages[1] == {"role": "assistant", "content": [attribution(1), shown("final", 1)]}
    assert "draft" not in json.dumps(messages)


def test_a_thought_image_is_shown_when_it_is_the_only_image() -> None:
    reply = answer(png("draft", thought=True))
    assert render(conversation(user(TextPart("go")), reply))[1] == {
        "role": "assistant",
        "content": [attribution(1), shown("draft", 1)],
    }


def test_error_turn_shows_the_warning_message() -> None:
    conv = conversation(
        user(TextPart("go")), failed("Gemini is unavailable right now (503). Press Retry in a moment.")
    )
    assert render(conv) == [
        {"role": "user", "content": ["go"]},
        {
            "role": "assistant",
            "content": f"{WARN} Gemini is unavailable right now (503). Press Retry in a moment.",
        },
    ]


def test_error_turn_without_details_still_says_it_failed() -> None:
    assert render(conversation(user(TextPart("go")), failed(None)))[1] == {
        "role": "assistant",
        "content": f"{WARN} This turn failed.",
    }


def test_text_only_answer_with_an_error_shows_the_text_and_the_warning() -> None:
    warning = "Gemini answered without an image (text only). Ask explicitly for an image."
    reply = answer(TextPart("Which shade of blue?"), notice=warning, tokens=56)
    assert render(conversation(user(TextPart("make it blue")), reply))[1] == {
        "role": "assistant",
        "content": [f"Which shade of blue?\n\n{WARN} {warning}\n\n{attribution(tokens='56')}"],
    }


def test_trailing_unanswered_user_turn_asks_to_press_retry() -> None:
    conv = conversation(user(TextPart("first")), answer(png("one")), user(TextPart("second")))
    messages = render(conv)
    assert messages[-2:] == [{"role": "user", "content": ["second"]}, UNANSWERED]
    assert len(messages) == 4


def test_only_user_turn_without_answer_asks_to_press_retry() -> None:
    assert render(conversation(user(TextPart("hello")))) == [
        {"role": "user", "content": ["hello"]},
        UNANSWERED,
    ]


def test_trailing_user_turn_with_a_running_call_shows_the_pending_message_instead() -> None:
    conv = conversation(user(TextPart("second")))
    assert render(conv, working_model="gemini-3-pro-image") == [
        {"role": "user", "content": ["second"]},
        {
            "role": "assistant",
            "content": "This usually takes 10\u201360 seconds. Your message is saved.",
            "metadata": {"title": "Editing with gemini-3-pro-image\u2026", "status": "pending"},
        },
    ]


def test_failed_last_turn_shows_its_error_and_no_retry_note() -> None:
    messages = render(conversation(user(TextPart("go")), failed("Boom. Press Retry.")))
    assert UNANSWERED not in messages
    assert messages[-1] == {"role": "assistant", "content": f"{WARN} Boom. Press Retry."}


def test_answered_conversation_has_no_retry_note() -> None:
    assert UNANSWERED not in render(conversation(user(TextPart("go")), answer(png("out"))))


def test_version_numbers_count_only_turns_with_an_image() -> None:
    conv = conversation(
        user(png("upload"), TextPart("stormy")),
        answer(png("v1")),
        user(TextPart("what now?")),
        answer(TextPart("Anything else?")),
        user(TextPart("darker")),
        failed("Timed out. Press Retry."),
        user(TextPart("darker please")),
        answer(TextPart("Darker."), png("v2")),
        user(TextPart("add rain")),
        answer(png("v3")),
    )
    assistant = [m["content"] for m in render(conv) if m["role"] == "assistant"]
    assert assistant == [
        [attribution(1), shown("v1", 1)],
        [f"Anything else?\n\n{attribution()}"],
        f"{WARN} Timed out. Press Retry.",
        [f"Darker.\n\n{attribution(2)}", shown("v2", 2)],
        [attribution(3), shown("v3", 3)],
    ]


def test_user_uploads_do_not_count_as_versions() -> None:
    conv = conversation(
        user(png("a")), answer(png("out")), user(png("b"), TextPart("merge")), answer(png("out2"))
    )
    alts = [c["alt_text"] for m in render(conv) for c in m["content"] if isinstance(c, dict)]
    assert alts == ["Your image", "Version 1", "Your image", "Version 2"]


def test_user_html_is_escaped_so_it_shows_as_typed_and_never_runs() -> None:
    text = "<script>alert(1)</script><img src=x onerror=alert(2)> & more"
    assert render(conversation(user(TextPart(text)), answer(png("out"))))[0] == {
        "role": "user",
        "content": ["&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; &amp; more"],
    }


def test_provider_metadata_never_reaches_the_chat() -> None:
    reply = answer(
        TextPart("plan", thought=True, provider_metadata=SIGNED),
        TextPart("done", provider_metadata=SIGNED),
        png("out", {"gemini": dict(SIGNED["gemini"])}),
    )
    assert SIGNATURE not in json.dumps(render(conversation(user(TextPart("go")), reply)))


# --- to_transcript ---------------------------------------------------------------------------


def test_transcript_of_an_empty_conversation() -> None:
    assert to_transcript(conversation()) == {
        "conversation_id": "c-1",
        "title": "Stormy sky",
        "awaiting_answer": False,
        "turns": [],
    }


def test_transcript_lists_turns_with_images_by_sha256() -> None:
    warning = "Gemini answered without an image (text only)."
    conv = conversation(
        user(png("upload"), TextPart("stormy sky")),
        answer(
            TextPart("thinking about clouds", thought=True, provider_metadata=SIGNED),
            png("draft", thought=True),
            TextPart("Stormier now.", provider_metadata=SIGNED),
            png("final", {"gemini": dict(SIGNED["gemini"])}),
        ),
        user(TextPart("and rain?")),
        answer(TextPart("Light or heavy rain?"), notice=warning, tokens=56),
        user(TextPart("heavy")),
        failed("Timed out. Press Retry.", kind="timeout"),
    )
    transcript = to_transcript(conv)
    assert transcript == {
        "conversation_id": "c-1",
        "title": "Stormy sky",
        "awaiting_answer": True,
        "turns": [
            {
                "role": "user",
                "status": "ok",
                "provider": None,
                "model": None,
                "text": "stormy sky",
                "images": [{"sha256": "upload", "mime_type": "image/png", "role": "input"}],
                "image_sha256": "upload",
                "finish_reason": None,
                "error": None,
                "notice": None,
                "usage": None,
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": None,
            },
            {
                "role": "assistant",
                "status": "ok",
                "provider": "gemini",
                "model": MODEL,
                "text": "Stormier now.",
                "images": [{"sha256": "final", "mime_type": "image/png", "role": "answer"}],
                "image_sha256": "final",
                "finish_reason": "STOP",
                "error": None,
                "notice": None,
                "usage": {
                    "input_tokens": 1234,
                    "output_tokens": 0,
                    "image_tokens": 0,
                    "thought_tokens": 0,
                    "cost_usd": 0.0,
                },
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": "v1",
            },
            {
                "role": "user",
                "status": "ok",
                "provider": None,
                "model": None,
                "text": "and rain?",
                "images": [],
                "image_sha256": None,
                "finish_reason": None,
                "error": None,
                "notice": None,
                "usage": None,
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": None,
            },
            {
                "role": "assistant",
                "status": "ok",
                "provider": "gemini",
                "model": MODEL,
                "text": "Light or heavy rain?",
                "images": [],
                "image_sha256": None,
                "finish_reason": "STOP",
                "error": None,
                "notice": warning,
                "usage": {
                    "input_tokens": 56,
                    "output_tokens": 0,
                    "image_tokens": 0,
                    "thought_tokens": 0,
                    "cost_usd": 0.0,
                },
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": None,
            },
            {
                "role": "user",
                "status": "ok",
                "provider": None,
                "model": None,
                "text": "heavy",
                "images": [],
                "image_sha256": None,
                "finish_reason": None,
                "error": None,
                "notice": None,
                "usage": None,
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": None,
            },
            {
                "role": "assistant",
                "status": "error",
                "provider": "gemini",
                "model": MODEL,
                "text": "",
                "images": [],
                "image_sha256": None,
                "finish_reason": None,
                "error": {"kind": "timeout", "message": "Timed out. Press Retry."},
                "notice": None,
                "usage": None,
                "attempts": [],
                "attribution": None,
                "variant": None,
                "picked": False,
                "version": None,
            },
        ],
    }
    dumped = json.dumps(transcript)
    assert SIGNATURE not in dumped
    assert "thoughtSignature" not in dumped
    assert "provider_metadata" not in dumped
    assert "thinking about clouds" not in dumped
    assert "draft" not in dumped


def test_transcript_is_not_awaiting_an_answer_once_the_last_turn_succeeded() -> None:
    assert to_transcript(conversation(user(TextPart("go")), answer(png("out"))))["awaiting_answer"] is False


def test_transcript_passes_user_html_through_unchanged() -> None:
    text = "<script>alert(1)</script>"
    assert to_transcript(conversation(user(TextPart(text))))["turns"][0]["text"] == text


def test_fallback_attribution_names_the_failure_and_who_answered() -> None:
    from chat.domain import Attempt
    from chat.ui.render import attempts_summary

    failed = Attempt(
        "gemini", "gemini-3.1-flash-image", "unavailable", "503 UNAVAILABLE: The model is overloaded"
    )
    turn = Turn(
        role=Role.ASSISTANT,
        parts=(),
        provider="openai",
        model="gpt-image-2",
        attempts=(failed, failed, failed, Attempt("openai", "gpt-image-2", "ok")),
    )
    assert attempts_summary(turn) == "Gemini: 503 UNAVAILABLE \u00d73 \u2192 OpenAI gpt-image-2"
    blocked = Attempt("gemini", "gemini-3.1-flash-image", "blocked", "finish reason IMAGE_SAFETY")
    single = Turn(role=Role.ASSISTANT, parts=(), attempts=(blocked, Attempt("openai", "gpt-image-2", "ok")))
    assert attempts_summary(single) == "Gemini: finish reason IMAGE_SAFETY \u2192 OpenAI gpt-image-2"
    plain = Turn(role=Role.ASSISTANT, parts=(), attempts=(Attempt("gemini", "gemini-3-pro-image", "ok"),))
    assert attempts_summary(plain) == "Gemini gemini-3-pro-image"


def test_user_turn_shows_the_marked_copy_but_never_the_mask() -> None:
    marked = ImagePart("c" * 64, "image/png", role=ImageRole.MARKED)
    mask = ImagePart("d" * 64, "image/png", role=ImageRole.MASK)
    turn = Turn(role=Role.USER, parts=(marked, mask, TextPart("remove the car")))
    conversation = Conversation(id="c1", title="t", turns=(turn,))
    [message, _] = to_messages(conversation, lambda p: Path(f"/blobs/{p.sha256[:1]}.png"))
    assert message["content"] == [
        {"path": "/blobs/c.png", "alt_text": "The area to change (magenta)"},
        "remove the car",
    ]
