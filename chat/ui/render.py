"""Stored conversation -> what Gradio shows (Chatbot messages) and what API callers get.

Pure functions: the chat is always rendered from the stored conversation, never kept in a
second copy. Images are shown from our own PNG/JPEG masters by path (Gradio copies them
into its cache), so nothing is re-encoded to WebP.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chat.domain import Conversation, ImagePart, ImageRole, Role, Turn
from chat.errors import PROVIDER_NAMES
from chat.ui.variants import answered_by, in_use, labels

__all__ = [
    "ImagePath",
    "attempts_summary",
    "chat_label",
    "pending_message",
    "to_messages",
    "to_transcript",
    "versions",
]

ImagePath = Callable[[ImagePart], str | Path]  # where Gradio may copy the image from
_ALT = {
    ImageRole.INPUT: "Your image",
    ImageRole.ANSWER: "Your image",
    ImageRole.MARKED: "The area to change (magenta)",
}
Message = dict[str, Any]


def to_messages(
    conversation: Conversation | None, image_path: ImagePath, *, working_model: str | None = None
) -> list[Message]:
    """Chatbot messages; ``working_model`` set while a call for the trailing user turn is running."""
    if conversation is None:
        return []
    messages: list[Message] = []
    names, used = labels(conversation), in_use(conversation)
    for index, turn in enumerate(conversation.turns):
        if turn.role is Role.USER:
            messages.append(_user_message(turn, image_path))
            continue
        if thoughts := turn.thoughts():
            messages.append({"role": "assistant", "content": thoughts, "metadata": {"title": "Thinking"}})
        messages.append(_assistant_message(turn, image_path, names.get(index, ""), index in used))
    if working_model:
        messages.append(pending_message(working_model))
    elif conversation.turns and conversation.turns[-1].role is Role.USER:
        messages.append(_unanswered())
    return messages


def pending_message(model: str) -> Message:
    """The visible status while a model call runs."""
    return {
        "role": "assistant",
        "content": "This usually takes 10\u201360 seconds. Your message is saved.",
        "metadata": {"title": f"Editing with {model}\u2026", "status": "pending"},
    }


def _user_message(turn: Turn, image_path: ImagePath) -> Message:
    content: list[Any] = [
        {"path": str(image_path(p)), "alt_text": _ALT[p.role]}
        for p in turn.images()
        if p.role is not ImageRole.MASK
    ]
    if text := turn.text():
        content.append(html.escape(text, quote=False))  # what the user typed is shown, never rendered as HTML
    return {"role": "user", "content": content}


def _assistant_message(turn: Turn, image_path: ImagePath, label: str, used: bool) -> Message:
    if turn.error is not None:
        message = turn.error.message or "This turn failed."
        if turn.variant is not None and label:
            message = f"{label} failed: {message}"
        return {"role": "assistant", "content": f"\u26a0\ufe0f {message}"}
    image = turn.shown_image()
    lines = [text] if (text := turn.text()) else []
    if turn.notice:
        lines.append(f"\u26a0\ufe0f {turn.notice}")
    lines.append(f"*{_attribution(turn, label if image else '', used)}*")
    content: list[Any] = ["\n\n".join(lines)]
    if image:
        content.append({"path": str(image_path(image)), "alt_text": f"Version {label[1:]}"})
    return {"role": "assistant", "content": content}


def _attribution(turn: Turn, label: str, used: bool) -> str:
    """E.g. "v2 · Gemini: 503 UNAVAILABLE ×3 → OpenAI gpt-image-2 · 1,234 tokens"; a variant the
    next edit builds on says so ("v3b · … · ✓ used next")."""
    bits = [label] if label else []
    bits.append(attempts_summary(turn) or answered_by(turn) or "unknown model")
    if turn.usage and turn.usage.total_tokens:
        bits.append(f"{turn.usage.total_tokens:,} tokens")
    if turn.attempts and turn.attempts[-1].paid_by == "cache":
        bits.append("from cache")
    elif turn.cost_usd:
        bits.append(f"\u2248 ${turn.cost_usd:.3f}")
    if turn.variant is not None and used:
        bits.append("\u2713 used next")
    return " \u00b7 ".join(bits)


def chat_label(conversation: Conversation | None) -> str:
    """The chat's caption: its size and what it has cost so far (an estimate)."""
    if conversation is None or not conversation.turns:
        return ""
    count = len(versions(conversation))
    return f"{html.escape(conversation.title, quote=False)} \u00b7 {count} version{'s' if count != 1 else ''} \u00b7 \u2248 ${conversation.cost_usd():.2f} so far"


def attempts_summary(turn: Turn) -> str:
    """Who was asked, in order: failures with their short reason, the answer with its model."""
    steps: list[tuple[str, int]] = []
    for attempt in turn.attempts:
        if attempt.outcome == "ok":
            step = f"{_name(attempt.provider)} {attempt.model}"
        else:
            reason = attempt.detail.split(":", 1)[0].strip() or attempt.outcome
            step = f"{_name(attempt.provider)}: {reason}"
        if steps and steps[-1][0] == step:
            steps[-1] = (step, steps[-1][1] + 1)
        else:
            steps.append((step, 1))
    if len(steps) == 1 and turn.attempts[-1].outcome == "ok":
        return steps[0][0]
    return " \u2192 ".join(f"{step} \u00d7{count}" if count > 1 else step for step, count in steps)


def _name(provider: str | None) -> str:
    return PROVIDER_NAMES.get(provider or "", provider or "unknown")


def _unanswered() -> Message:
    return {
        "role": "assistant",
        "content": "\u26a0\ufe0f This message has no answer yet (the request was interrupted). Press Retry.",
    }


def to_transcript(conversation: Conversation) -> dict[str, Any]:
    """A JSON-able view for API clients: no bytes, no provider secrets, images by sha256; each
    answer's version label ("v3b"), which ``/pick`` takes."""
    names = labels(conversation)
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "awaiting_answer": conversation.awaiting_answer(),
        "turns": [_transcript_turn(t) | {"version": names.get(n)} for n, t in enumerate(conversation.turns)],
    }


def _transcript_turn(turn: Turn) -> dict[str, Any]:
    """The turn's own serialisations (``to_dict``), with the parts as the chat shows them."""
    shown = turn.shown_image()
    return {
        "role": turn.role.value,
        "status": turn.status.value,
        "provider": turn.provider,
        "model": turn.model,
        "text": turn.text(),
        "images": [
            {"sha256": p.sha256, "mime_type": p.mime_type, "role": p.role.value} for p in turn.shown_images()
        ],
        "image_sha256": shown.sha256 if shown else None,
        "finish_reason": turn.finish_reason,
        "error": turn.error.to_dict() if turn.error else None,
        "notice": turn.notice,
        "usage": turn.usage.to_dict() if turn.usage else None,
        "attempts": [attempt.to_dict() for attempt in turn.attempts],
        "attribution": attempts_summary(turn) if turn.attempts else None,
        "variant": turn.variant,
        "picked": turn.picked,
    }


def versions(conversation: Conversation) -> list[tuple[str, int]]:
    """Every generated image as ("v2 · OpenAI gpt-image-2", "v3 · crop … (local)"; turn index), oldest first."""
    found: list[tuple[str, int]] = []
    names = labels(conversation)
    for index, turn in enumerate(conversation.turns):
        if turn.role is Role.ASSISTANT and not turn.failed and turn.shown_image():
            found.append((f"{names[index]} \u00b7 {answered_by(turn)}", index))
    return found


def undo_target(conversation: Conversation | None) -> tuple[str, int] | None:
    """When the newest version is a quick edit: the version before it ("v1", its turn index), which
    "Edit from here" branches from to undo it (the conversation itself is never rewritten)."""
    found = versions(conversation) if conversation else []
    if len(found) < 2 or not conversation or not conversation.turns[found[-1][1]].local:
        return None
    label, index = found[-2]
    return label.split(" ")[0], index
