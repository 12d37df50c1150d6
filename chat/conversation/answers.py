"""Outcome -> Turn: what the fallback policy's outcome becomes in the conversation. Pure.

An answer becomes an answered turn with its images (as ``NewImage`` bytes, for the turn writer
to store); a text-only answer is answered too, with a notice saying why there is no image (the
model may be asking a question); anything else becomes a failed turn with one sentence for the
user. Nothing here does I/O, so every case is tested with literal values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from chat.conversation.fallback import Outcome
from chat.conversation.turns import NewImage
from chat.domain import (
    Attempt,
    GenerationOptions,
    ImageData,
    ImageRole,
    Part,
    ProviderReply,
    Role,
    Turn,
    TurnError,
    frozen_metadata,
)
from chat.errors import NoImageError, UnavailableError

__all__ = ["INTERNAL", "answer_turn", "failed_turn"]

INTERNAL = "Something went wrong on our side; your message is saved. Press Retry to try again."

ModelFor = Callable[
    [str, GenerationOptions], str
]  # the model a provider would use (FallbackPolicy.model_for)


def answer_turn(
    outcome: Outcome, options: GenerationOptions, *, model_for: ModelFor, now: datetime
) -> tuple[Turn, list[NewImage]]:
    """The assistant turn for ``outcome`` and the images it brings."""
    reply = outcome.reply
    notice = None
    if reply is None and isinstance(outcome.error, NoImageError) and outcome.error.reply is not None:
        reply, notice = outcome.error.reply, outcome.user_message()
    if reply is not None:
        try:
            return _answered(reply, options, outcome.attempts, notice=notice, now=now)
        except ValueError:  # an image in the answer does not decode
            corrupt = UnavailableError(reply.provider, "the image in the answer was corrupt")
            kind, message, provider = corrupt.kind, corrupt.user_message(), reply.provider
    elif outcome.error is not None:
        kind, message, provider = outcome.error.kind, outcome.user_message(), outcome.error.provider
    else:
        raise LookupError("no provider is available for this route")
    turn = failed_turn(
        kind, message, options, provider=provider, model_for=model_for, attempts=outcome.attempts, now=now
    )
    return turn, []


def failed_turn(
    kind: str,
    message: str,
    options: GenerationOptions,
    *,
    provider: str | None,
    model_for: ModelFor,
    attempts: tuple[Attempt, ...] = (),
    now: datetime,
) -> Turn:
    return Turn(
        role=Role.ASSISTANT,
        parts=(),
        provider=provider,
        model=model_for(provider, options) if provider else None,
        error=TurnError(kind, message),
        options=frozen_metadata(options.to_dict()),
        attempts=attempts,
        created_at=now,
    )


def _answered(
    reply: ProviderReply,
    options: GenerationOptions,
    attempts: tuple[Attempt, ...],
    *,
    notice: str | None,
    now: datetime,
) -> tuple[Turn, list[NewImage]]:
    images: list[NewImage] = []
    parts: list[Part] = []
    for part in reply.parts:
        if isinstance(part, ImageData):
            images.append(NewImage.of(part.data, part.mime_type, sha256=part.sha256))
            parts.append(
                images[-1].part(role=ImageRole.ANSWER, thought=part.thought, metadata=part.provider_metadata)
            )
        else:
            parts.append(part)
    turn = Turn(
        role=Role.ASSISTANT,
        parts=tuple(parts),
        provider=reply.provider,
        model=reply.model,
        finish_reason=reply.finish_reason,
        notice=notice,
        options=frozen_metadata(options.to_dict()),
        usage=reply.usage,
        attempts=attempts,
        request_hash=reply.request_hash,
        created_at=now,
    )
    return turn, images
