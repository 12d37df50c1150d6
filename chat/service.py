"""ChatService: the one place that joins storage, the blob store and the image provider.

Everything the UI (or an API client) can do goes through here, so it is testable
without Gradio. One conversation's turns are serialized by a per-conversation lock; the
user's turn is committed before the provider is called, so a failure never loses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.access import GONE, Access, Actor, Gatekeeper, Grant
from chat.config import DEFAULTS
from chat.domain import (
    Attempt,
    Conversation,
    GenerationOptions,
    ImageData,
    ImagePart,
    ImageRole,
    Metadata,
    Part,
    ProviderReply,
    Role,
    TextPart,
    Turn,
    TurnError,
    frozen_metadata,
    through_last_user_turn,
)
from chat.errors import AccessError, InputError, NoImageError, UnavailableError
from chat.fallback import ROUTES, FallbackPolicy, Outcome
from chat.images import (
    ImageLimits,
    MaskImages,
    PreparedImage,
    image_size,
    mask_images,
    prepare_upload,
    read_region,
)
from chat.limits import Guard, counted_as
from chat.recent import RecentConversations
from chat.text import one_line
from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["Attachment", "ChatService", "InputLimits", "Step", "new_conversation_id"]

log = logging.getLogger("retouch.service")

TITLE_CHARS = 60


@dataclass(frozen=True)
class Attachment:
    """An uploaded file as the UI hands it over: its name (for messages) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Step:
    """A turn's progress as the caller shows it: the conversation as stored, and the actor's grant.

    The grant is the one checked when the turn began, so the caller never asks again.
    """

    grant: Grant
    conversation: Conversation


@dataclass(frozen=True)
class InputLimits:
    images: ImageLimits = ImageLimits()
    max_prompt_chars: int = DEFAULTS.max_prompt_chars
    max_images_per_message: int = DEFAULTS.max_images_per_message


@dataclass(frozen=True)
class _StoredImage:
    """An image already in the blob store, with what its row needs."""

    part: ImagePart
    width: int
    height: int
    size_bytes: int


def new_conversation_id() -> str:
    """128 random bits, URL-safe: the id is in the page URL, so it must not be guessable."""
    return secrets.token_urlsafe(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChatService:
    def __init__(
        self,
        *,
        engine: Engine,
        blobs: BlobStore,
        policy: FallbackPolicy,
        limits: InputLimits = InputLimits(),
        guard: Guard | None = None,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_conversation_id,
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._policy = policy
        self._limits = limits
        self._guard = guard
        self._clock = clock
        self._new_id = new_id
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._written = RecentConversations()
        self.gate = Gatekeeper(engine)

    # --- reads ---------------------------------------------------------------------------

    async def open(self, actor: Actor, conversation_id: str) -> tuple[Grant, Conversation]:
        """The conversation and what ``actor`` may do with it; AccessError if nothing."""
        grant, conversation = await asyncio.to_thread(
            self.gate.read,  # one read-only transaction for both
            actor,
            conversation_id,
            lambda session: repo.get_conversation(session=session, conversation_id=conversation_id),
        )
        if conversation is None:
            raise AccessError(GONE)
        return grant, conversation

    def busy(self, conversation_id: str) -> bool:
        """A turn of this conversation is being answered right now (in this process).

        After a crash nothing is busy, so an unanswered message then reads as interrupted.
        """
        lock = self._locks.get(conversation_id)
        return lock is not None and lock.locked()

    async def load(self, actor: Actor, conversation_id: str) -> Conversation:
        return (await self.open(actor, conversation_id))[1]

    def image_path(self, part: ImagePart) -> Path:
        return self._blobs.path(part.sha256, part.mime_type)

    # --- writes --------------------------------------------------------------------------

    async def send(
        self,
        actor: Actor,
        conversation_id: str | None,
        text: str,
        attachments: Sequence[Attachment] = (),
        *,
        options: GenerationOptions,
        painted: bytes | None = None,
        keys: Mapping[str, SecretStr] | None = None,
    ) -> AsyncIterator[Step]:
        """Store the user's turn, then answer it: yields a Step after each.

        ``painted`` is a PNG the size of the current image, white where the edit should go
        (the brush strokes); it becomes a mask for OpenAI and a marked copy for Gemini.
        Bad input raises InputError before anything is written.
        """
        grant = None
        if conversation_id:
            grant = await asyncio.to_thread(self.gate.grant, actor, conversation_id, write=True)
        else:
            actor.own_id()  # a new conversation must belong to someone: never to a share token
        images = await asyncio.to_thread(self._prepare, text, attachments)
        keys = keys or {}
        await self._admit(actor, options, keys, len(images) + 1, conversation_id)
        conversation_id = conversation_id or self._new_id()
        grant = grant or Grant(conversation_id, Access.OWNER)  # a new one is the actor's own
        async with self._lock(conversation_id):
            conversation = await asyncio.to_thread(
                self._store_user_turn, conversation_id, text.strip(), images, painted, actor
            )
            yield Step(grant, conversation)
            yield Step(grant, await self._answer(conversation, options, keys))

    async def retry(
        self,
        actor: Actor,
        conversation_id: str,
        *,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr] | None = None,
    ) -> AsyncIterator[Step]:
        """Answer the last user message again: after a failure, or for another variant.

        A variant is a new answer after the previous one; replay uses the newest answer,
        and the user's message is never duplicated.
        """
        grant = await asyncio.to_thread(self.gate.grant, actor, conversation_id, write=True)
        keys = keys or {}
        await self._admit(actor, options, keys, 2, conversation_id)
        async with self._lock(conversation_id):
            conversation = await asyncio.to_thread(self._stored, conversation_id)
            if conversation is None or not any(t.role is Role.USER for t in conversation.turns):
                raise InputError("There is nothing to retry yet: send a message first.")
            yield Step(grant, conversation)
            yield Step(grant, await self._answer(conversation, options, keys))

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    # --- steps ---------------------------------------------------------------------------

    def _prepare(self, text: str, attachments: Sequence[Attachment]) -> list[PreparedImage]:
        if not isinstance(text, str):  # an API caller may send any JSON
            raise InputError("The message must be text.")
        if not text.strip() and not attachments:
            raise InputError("Type what to change, or attach a photo to start from.")
        if len(text) > self._limits.max_prompt_chars:
            raise InputError(
                f"Your message is {len(text):,} characters; the limit is {self._limits.max_prompt_chars:,}. "
                "Please shorten it."
            )
        if len(attachments) > self._limits.max_images_per_message:
            raise InputError(
                f"You attached {len(attachments)} images; one message can carry at most "
                f"{self._limits.max_images_per_message}."
            )
        return [prepare_upload(a.data, name=a.name, limits=self._limits.images) for a in attachments]

    def _store_user_turn(
        self,
        conversation_id: str,
        text: str,
        images: list[PreparedImage],
        painted: bytes | None,
        actor: Actor,
    ) -> Conversation:
        now = self._clock()
        # Files first and outside the transaction: the write lock is held for rows only.
        existing = self._stored(conversation_id)
        marks = self._mask_images(existing, painted) if painted else None
        stored = [self._put_image(img.data, img.mime_type, role=ImageRole.INPUT) for img in images]
        if marks:
            stored.append(self._put_image(marks.marked_png, "image/png", role=ImageRole.MARKED))
            stored.append(self._put_image(marks.mask_png, "image/png", role=ImageRole.MASK))
        parts: list[Part] = [s.part for s in stored]
        if text:
            parts.append(TextPart(text))
        turn = Turn(role=Role.USER, parts=tuple(parts), created_at=now)
        with session_scope(self._engine) as session:
            if existing is None:
                existing = Conversation(id=conversation_id, title=_title(text))
                repo.create_conversation(
                    session=session,
                    conversation_id=conversation_id,
                    title=existing.title,
                    now=now,
                    owner_id=actor.own_id(),
                )
            conversation = self._append_in(session, existing, turn, stored, now)
        return self._remember(conversation)

    def _mask_images(self, conversation: Conversation | None, painted: bytes) -> MaskImages:
        current = conversation.latest_image() if conversation else None
        if current is None:
            raise InputError("There is no image to paint on yet: send a photo first, then paint the area.")
        return mask_images(self._load_image(current), read_region(painted))

    async def _answer(
        self, conversation: Conversation, options: GenerationOptions, keys: Mapping[str, SecretStr]
    ) -> Conversation:
        started = time.monotonic()
        stored: list[_StoredImage] = []
        try:
            history = through_last_user_turn(conversation.turns)
            outcome = await self._policy.answer(history, options, self._load_image, keys=keys)
            turn, stored = await asyncio.to_thread(self._outcome_turn, outcome, options)
        except Exception:
            log.exception("turn failed in conversation %s", conversation.id)
            message = "Something went wrong on our side; your message is saved. Press Retry to try again."
            turn = self._error_turn("internal", message, options, provider=None, attempts=())
        cost = _server_cost(turn)
        log.info(
            turn_log_line(conversation.id, turn, latency_ms=(time.monotonic() - started) * 1000, cost=cost)
        )
        return await asyncio.to_thread(self._record, conversation, turn, stored, cost)

    async def _admit(
        self,
        actor: Actor,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        images: int,
        conversation_id: str | None,
    ) -> None:
        """The conversation's budget, rate limits and the daily cap, before anything is stored or sent."""
        if options.budget_usd is not None and conversation_id:
            conversation = await asyncio.to_thread(self._stored, conversation_id)
            spent = conversation.cost_usd() if conversation else 0.0
            worst = self._policy.worst_case_cost(options, input_images=images)
            if spent + worst > options.budget_usd:
                raise InputError(
                    f"This conversation has cost \u2248 ${spent:.2f} of its ${options.budget_usd:.2f} budget, "
                    f"and the next edit could cost up to ${worst:.2f}. Raise the budget under Options to go on."
                )
        if self._guard is None:
            return
        covered = all(name in keys for name in ROUTES[options.route])
        server_cost = 0.0 if covered else self._policy.worst_case_cost(options, input_images=images)
        await asyncio.to_thread(self._guard.admit, counted_as(actor), server_cost=server_cost)

    def _outcome_turn(self, outcome: Outcome, options: GenerationOptions) -> tuple[Turn, list[_StoredImage]]:
        if outcome.reply is not None:
            try:
                return self._reply_turn(outcome.reply, options, outcome.attempts)
            except UnavailableError as exc:  # the image in the answer did not decode
                error_turn = self._error_turn(
                    exc.kind, exc.user_message(), options, provider=exc.provider, attempts=outcome.attempts
                )
                return error_turn, []
        error = outcome.error
        if error is None:
            raise LookupError("no provider is available for this route")
        if isinstance(error, NoImageError) and error.reply is not None:
            # A text-only answer is still part of the conversation (the model may ask a question).
            turn, stored = self._reply_turn(error.reply, options, outcome.attempts)
            return replace(turn, notice=outcome.user_message()), stored
        turn = self._error_turn(
            error.kind, outcome.user_message(), options, provider=error.provider, attempts=outcome.attempts
        )
        return turn, []

    def _reply_turn(
        self, reply: ProviderReply, options: GenerationOptions, attempts: tuple[Attempt, ...]
    ) -> tuple[Turn, list[_StoredImage]]:
        stored: list[_StoredImage] = []
        parts: list[Part] = []
        for part in reply.parts:
            if isinstance(part, ImageData):
                stored.append(
                    self._put_image(
                        part.data,
                        part.mime_type,
                        role=ImageRole.ANSWER,
                        thought=part.thought,
                        metadata=part.provider_metadata,
                        provider=reply.provider,
                    )
                )
                parts.append(stored[-1].part)
            else:
                parts.append(part)
        turn = Turn(
            role=Role.ASSISTANT,
            parts=tuple(parts),
            provider=reply.provider,
            model=reply.model,
            finish_reason=reply.finish_reason,
            options=frozen_metadata(options.to_dict()),
            usage=reply.usage,
            attempts=attempts,
            request_hash=reply.request_hash,
            created_at=self._clock(),
        )
        return turn, stored

    def _put_image(
        self,
        data: bytes,
        mime: str,
        *,
        role: ImageRole,
        thought: bool = False,
        metadata: Metadata | None = None,
        provider: str = "upload",
    ) -> _StoredImage:
        """Write the bytes to the blob store first: rows are only ever added after their image."""
        try:
            width, height = image_size(data)
        except ValueError as exc:
            raise UnavailableError(provider, "the image in the answer was corrupt") from exc
        sha = self._blobs.put(data, mime)
        part = ImagePart(sha, mime, role=role, thought=thought, provider_metadata=frozen_metadata(metadata))
        return _StoredImage(part, width, height, len(data))

    def _error_turn(
        self,
        kind: str,
        message: str,
        options: GenerationOptions,
        *,
        provider: str | None,
        attempts: tuple[Attempt, ...],
    ) -> Turn:
        return Turn(
            role=Role.ASSISTANT,
            parts=(),
            provider=provider,
            model=self._policy.model_for(provider, options) if provider else None,
            error=TurnError(kind, message),
            options=frozen_metadata(options.to_dict()),
            attempts=attempts,
            created_at=self._clock(),
        )

    def _record(
        self, conversation: Conversation, turn: Turn, stored: Sequence[_StoredImage], cost: float
    ) -> Conversation:
        """The answer and what it cost on the server's keys, in one transaction."""
        with session_scope(self._engine) as session:
            if self._guard is not None and cost:
                self._guard.charge(cost, session=session)
            conversation = self._append_in(session, conversation, turn, stored, self._clock())
        return self._remember(conversation)

    def _append_in(
        self,
        session: Session,
        conversation: Conversation,
        turn: Turn,
        stored: Sequence[_StoredImage],
        now: datetime,
    ) -> Conversation:
        for image in stored:
            repo.save_image(
                session=session,
                sha256=image.part.sha256,
                mime_type=image.part.mime_type,
                width=image.width,
                height=image.height,
                size_bytes=image.size_bytes,
                now=now,
            )
        return repo.append_to(session=session, conversation=conversation, turn=turn, now=now)

    def _stored(self, conversation_id: str) -> Conversation | None:
        """The conversation as stored: as this service last wrote it (chat/recent.py), else loaded."""
        conversation = self._written.get(conversation_id)
        return conversation if conversation is not None else self._load(conversation_id)

    def _remember(self, conversation: Conversation) -> Conversation:
        self._written.put(conversation)
        return conversation

    def _load(self, conversation_id: str) -> Conversation | None:
        with session_scope(self._engine, read_only=True) as session:
            return repo.get_conversation(session=session, conversation_id=conversation_id)

    def _load_image(self, part: ImagePart) -> bytes:
        return self._blobs.read(part.sha256, part.mime_type)


def _server_cost(turn: Turn) -> float:
    """The estimated cost of the answering call, if it went on the server's key."""
    paid_by_server = any(a.outcome == "ok" and a.paid_by == "server" for a in turn.attempts)
    return turn.cost_usd if paid_by_server else 0.0


def turn_log_line(conversation_id: str, turn: Turn, *, latency_ms: float, cost: float) -> str:
    """One JSON line per turn for operators: who answered, how fast, how much. Never keys or bytes."""
    return json.dumps(
        {
            "event": "turn",
            "conversation": conversation_id,
            "provider": turn.provider,
            "model": turn.model,
            "outcome": turn.error.kind if turn.error else "ok",
            "attempts": [f"{a.provider}:{a.outcome}" for a in turn.attempts],
            "paid_by": turn.attempts[-1].paid_by if turn.attempts else None,
            "latency_ms": round(latency_ms),
            "tokens": turn.usage.total_tokens if turn.usage else None,
            "cost_usd": round(cost, 4),
        }
    )


def _title(text: str) -> str:
    line = one_line(text)
    if not line:
        return "Untitled edit"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "\u2026"
