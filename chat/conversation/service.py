"""ChatService: a turn from the user's message to the stored answer, for the UI and the API alike.

Each job is its own module: who may (chat/sharing/access.py), whether the turn may run (chat/limits/admission.py),
who answers (chat/conversation/fallback.py), what the outcome becomes (chat/conversation/answers.py, pure) and how turns
are stored (chat/conversation/turns.py). This joins them in order. One conversation's turns are serialized by
a per-conversation lock; the user's turn is committed before the provider is called, so a
failure never loses it. What admission reserved against the daily cap is settled by the answer's
transaction, or released when the turn ends without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from chat.config import DEFAULTS
from chat.conversation.answers import INTERNAL, answer_turn, failed_turn
from chat.conversation.fallback import FallbackPolicy, Outcome
from chat.conversation.turns import NewConversation, NewImage, TurnWriter
from chat.domain import (
    Conversation,
    GenerationOptions,
    ImagePart,
    ImageRole,
    Part,
    Role,
    TextPart,
    Turn,
    through_last_user_turn,
)
from chat.errors import AccessError, InputError
from chat.limits.admission import Admission, server_cost
from chat.limits.guard import Guard, Reservation
from chat.media.images import ImageLimits, PreparedImage, mask_images, prepare_upload, read_region
from chat.sharing.access import GONE, Access, Actor, Gatekeeper, Grant
from chat.text import one_line
from storage import BlobStore
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


def new_conversation_id() -> str:
    """128 random bits, URL-safe: the id is in the page URL, so it must not be guessable."""
    return secrets.token_urlsafe(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChatService:
    """Send and retry: admission, the user's turn stored, the policy's answer stored; reads for the UI."""

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
        self._blobs = blobs
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._new_id = new_id
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._admission = Admission(policy, guard)
        self.writer = TurnWriter(engine=engine, blobs=blobs, clock=clock, guard=guard)
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
        keys = keys or {}
        grant, new, images, reservation = await asyncio.to_thread(
            self._admitted_message, actor, conversation_id, text, attachments, options, keys
        )
        try:
            async with self._lock(grant.conversation_id):
                conversation = await asyncio.to_thread(
                    self._store_message, new or grant.conversation_id, text.strip(), images, painted
                )
                yield Step(grant, conversation)
                answered = await self._answer(conversation, options, keys, reservation)
                reservation = None  # settled with the answer
                yield Step(grant, answered)
        finally:
            await self._release(reservation)

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
        keys = keys or {}
        grant, reservation = await asyncio.to_thread(
            self._admitted_retry, actor, conversation_id, options, keys
        )
        try:
            async with self._lock(conversation_id):
                conversation = await asyncio.to_thread(self.writer.stored, conversation_id)
                if conversation is None or not any(t.role is Role.USER for t in conversation.turns):
                    raise InputError("There is nothing to retry yet: send a message first.")
                yield Step(grant, conversation)
                answered = await self._answer(conversation, options, keys, reservation)
                reservation = None  # settled with the answer
                yield Step(grant, answered)
        finally:
            await self._release(reservation)

    async def _release(self, reservation: Reservation | None) -> None:
        """A turn that ends without its answer stored (refused under the lock, cut off, closed by
        the caller) gives back what it reserved; if even this never runs, the reservation expires."""
        if reservation is not None:
            await asyncio.to_thread(self._admission.release, reservation)

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    # --- steps ---------------------------------------------------------------------------

    # Each step below is blocking and runs in one worker-thread hop: a turn hands off to a thread
    # three times (before the lock, the message, the answer), not once per query.

    def _admitted_message(
        self,
        actor: Actor,
        conversation_id: str | None,
        text: str,
        attachments: Sequence[Attachment],
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
    ) -> tuple[Grant, NewConversation | None, list[PreparedImage], Reservation | None]:
        """Who may write, the message's checks and admission: everything decided before the lock."""
        if conversation_id:
            grant, owner_id = self.gate.grant(actor, conversation_id, write=True), None
        else:
            # A new conversation is the actor's own, and must belong to someone: never to a share token.
            grant, owner_id = Grant(self._new_id(), Access.OWNER), actor.own_id()
        images = self._prepare(text, attachments)  # refuses what is not text, before a title is made of it
        new = NewConversation(grant.conversation_id, _title(text), owner_id) if owner_id else None
        reservation = self._admit(
            actor, options, keys, len(images) + 1, None if new else grant.conversation_id
        )
        return grant, new, images, reservation

    def _admitted_retry(
        self, actor: Actor, conversation_id: str, options: GenerationOptions, keys: Mapping[str, SecretStr]
    ) -> tuple[Grant, Reservation | None]:
        grant = self.gate.grant(actor, conversation_id, write=True)
        return grant, self._admit(actor, options, keys, 2, conversation_id)

    def _admit(
        self,
        actor: Actor,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        input_images: int,
        conversation_id: str | None,
    ) -> Reservation | None:
        stored = self.writer.stored(conversation_id) if conversation_id else None
        spent = stored.cost_usd() if stored else 0.0
        return self._admission.admit(actor, options, keys, input_images=input_images, spent=spent)

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

    def _store_message(
        self,
        to: NewConversation | str,
        text: str,
        uploads: list[PreparedImage],
        painted: bytes | None,
    ) -> Conversation:
        """The user's turn: their photos, the painted region as a marked copy and a mask, their text.

        ``to`` is a new conversation, or the id of a stored one, read here under its lock (another
        turn may have landed since access was granted).
        """
        conversation = self.writer.stored(to) if isinstance(to, str) else to
        if conversation is None:
            raise AccessError(GONE)  # deleted since access was granted
        images = [NewImage.of(upload.data, upload.mime_type) for upload in uploads]
        parts: list[Part] = [image.part(role=ImageRole.INPUT) for image in images]
        if painted:
            current = conversation.latest_image() if isinstance(conversation, Conversation) else None
            if current is None:
                raise InputError(
                    "There is no image to paint on yet: send a photo first, then paint the area."
                )
            marks = mask_images(self._load_image(current), read_region(painted))
            for data, role in ((marks.marked_png, ImageRole.MARKED), (marks.mask_png, ImageRole.MASK)):
                images.append(NewImage.of(data, "image/png"))
                parts.append(images[-1].part(role=role))
        if text:
            parts.append(TextPart(text))
        turn = Turn(role=Role.USER, parts=tuple(parts), created_at=self._clock())
        return self.writer.append(conversation, [turn], images)

    async def _answer(
        self,
        conversation: Conversation,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        reservation: Reservation | None,
    ) -> Conversation:
        started = time.monotonic()
        try:
            history = through_last_user_turn(conversation.turns)
            outcome: Outcome | None = await self._policy.answer(history, options, self._load_image, keys=keys)
        except Exception:
            log.exception("turn failed in conversation %s", conversation.id)
            outcome = None
        return await asyncio.to_thread(self._record, conversation, outcome, options, started, reservation)

    def _record(
        self,
        conversation: Conversation,
        outcome: Outcome | None,
        options: GenerationOptions,
        started: float,
        reservation: Reservation | None,
    ) -> Conversation:
        """The answer (or why there is none) stored with what it cost on the server's keys, which
        settles what the turn reserved (a failed turn's cost is 0)."""
        images: list[NewImage] = []
        turn = None
        if outcome is not None:
            try:
                turn, images = answer_turn(
                    outcome, options, model_for=self._policy.model_for, now=self._clock()
                )
            except Exception:
                log.exception("turn failed in conversation %s", conversation.id)
        if turn is None:
            turn = failed_turn(
                "internal",
                INTERNAL,
                options,
                provider=None,
                model_for=self._policy.model_for,
                now=self._clock(),
            )
        cost = server_cost(turn)
        log.info(
            turn_log_line(conversation.id, turn, latency_ms=(time.monotonic() - started) * 1000, cost=cost)
        )
        return self.writer.append(conversation, [turn], images, server_cost=cost, reservation=reservation)

    def _load_image(self, part: ImagePart) -> bytes:
        return self._blobs.read(part.sha256, part.mime_type)


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
