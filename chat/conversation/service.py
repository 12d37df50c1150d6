"""ChatService: a turn from the user's message to the stored answer, for the UI and the API alike.

Each job is its own module: who may (chat/sharing/access.py), whether the turn may run (chat/limits/admission.py),
who answers (chat/conversation/fallback.py), what the outcome becomes (chat/conversation/answers.py, pure) and how turns
are stored (chat/conversation/turns.py). This joins them in order. One conversation's turns are serialized,
on every replica, by its lease (chat/conversation/leases.py), taken in the transaction that checks
who may write; what depends on the stored conversation (its budget, the image a mask is painted
on, the history sent) is read under it. The user's turn is committed before the provider is
called, so a failure never loses it. What admission reserved against the daily cap is settled by
the answer's transaction, or released when the turn ends without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.config import DEFAULTS
from chat.conversation.answers import INTERNAL, answer_turn, failed_turn
from chat.conversation.fallback import FallbackPolicy, Outcome
from chat.conversation.leases import Lease, Leases
from chat.conversation.runs import Mailbox, ProgressBoard, TurnRuns, Update
from chat.conversation.turns import NewConversation, NewImage, TurnWriter
from chat.domain import (
    LOCAL_PROVIDER,
    Conversation,
    GenerationOptions,
    ImagePart,
    ImageRole,
    Part,
    Progress,
    ProgressSink,
    Role,
    TextPart,
    Turn,
    Usage,
    latest_answers,
    through_last_user_turn,
)
from chat.errors import AccessError, ConversationMovedError, InputError, StoppedError, StorageUnavailableError
from chat.limits.admission import Admission, server_cost
from chat.limits.guard import Guard, Reservation
from chat.media.images import ImageLimits, PreparedImage, mask_images, prepare_upload, read_region
from chat.media.quick_edits import QuickEdit, apply_quick_edit
from chat.sharing.access import GONE, Access, Actor, Gatekeeper, Grant
from chat.text import one_line
from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["Attachment", "ChatService", "InputLimits", "Stamp", "Step", "new_conversation_id"]

#: What became of one call: its outcome, the storage's error, a stop, or None if it broke.
Answer = Outcome | StorageUnavailableError | StoppedError | None

log = logging.getLogger("retouch.service")

TITLE_CHARS = 60


@dataclass(frozen=True)
class Attachment:
    """An uploaded file as the UI hands it over: its name (for messages) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Step:
    """A turn's progress (or an opened conversation) as the caller shows it: the conversation as
    stored, the actor's grant, and whether a turn of it is being answered right now on any replica
    (so an unanswered message reads as in progress rather than interrupted); while this replica
    answers it, what the call has shown so far.

    The grant is the one checked when the turn began, so the caller never asks again.
    """

    grant: Grant
    conversation: Conversation
    answering: bool = False
    progress: tuple[
        Progress | None, ...
    ] = ()  # while answering here: each call's newest snapshot (None: nothing yet)
    # While answering here: when the call started (time.monotonic); a watcher of a turn on another
    # replica gets when its message was stored, on the same clock (``follow``).
    since: float | None = None


@dataclass(frozen=True)
class Stamp:
    """A conversation's version as a watching page last saw it: the stored turn count and
    revision, whether a turn of it runs on any replica (a live lease), and how many things this
    replica's turn of it has shown so far (its progress, known here only). Two equal stamps
    mean nothing on the page would change."""

    conversation_id: str
    turn_count: int
    revision: int
    answering: bool
    shown: int = 0


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
    """Send and retry: admission, the user's turn stored, the policy's answer stored; quick edits;
    reads for the UI."""

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
        leases: Leases | None = None,
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._new_id = new_id
        self._leases = leases or Leases(engine, clock=clock)
        self._admission = Admission(policy, guard)
        self._runs: TurnRuns[Step] = TurnRuns()
        self.writer = TurnWriter(engine=engine, blobs=blobs, clock=clock, guard=guard)
        self.gate = Gatekeeper(engine)

    # --- reads ---------------------------------------------------------------------------

    async def open(self, actor: Actor, conversation_id: str) -> Step:
        """The conversation, what ``actor`` may do with it and whether it is being answered; AccessError if nothing."""
        grant, (conversation, answering) = await asyncio.to_thread(
            self.gate.read,  # one read-only transaction for all three
            actor,
            conversation_id,
            lambda session: self._read(session, conversation_id),
        )
        if conversation is None:
            raise AccessError(GONE)
        return Step(grant, conversation, answering)

    def _read(self, session: Session, conversation_id: str) -> tuple[Conversation | None, bool]:
        """The stored conversation, to be shown (without the parts' provider metadata: never shown,
        and MBs of signatures); for an unanswered one, whether some replica's turn holds its lease
        (after a crash the lease expires, and the message then reads as interrupted)."""
        conversation = repo.get_conversation(
            session=session, conversation_id=conversation_id, replayable=False
        )
        unanswered = (
            conversation is not None and conversation.turns and conversation.turns[-1].role is Role.USER
        )
        return conversation, bool(unanswered) and self._leases.live(session, conversation_id)

    async def stamp(self, actor: Actor, conversation_id: str) -> Stamp:
        """The conversation's stamp, for a page watching it (a share link, another tab) to compare
        with the one it shows: one SELECT, access included (a view link may watch; a stranger is
        refused as ``open`` refuses them), nothing loaded."""
        return (await self._stamped(actor, conversation_id))[1]

    async def watch(self, actor: Actor, conversation_id: str) -> Step:
        """What a watching page shows once the stamp changed: while a turn of it runs here, what the
        turn showed last (its progress with it), from memory; else the stored conversation, and for
        a turn running on another replica the time since its message was stored (``since``)."""
        grant, stamp = await self._stamped(actor, conversation_id)
        newest = self._runs.newest(conversation_id) if stamp.answering else None
        if (
            newest is not None
            and newest[1].answering
            and len(newest[1].conversation.turns) == stamp.turn_count
        ):
            return replace(newest[1], grant=grant)
        opened = await self.open(actor, conversation_id)
        turns = opened.conversation.turns
        if opened.answering and turns and turns[-1].created_at is not None:
            waited = (self._clock() - turns[-1].created_at).total_seconds()
            opened = replace(opened, since=time.monotonic() - max(0.0, waited))
        return opened

    async def _stamped(self, actor: Actor, conversation_id: str) -> tuple[Grant, Stamp]:
        grant, stored = await asyncio.to_thread(self.gate.stamp, actor, conversation_id, self._clock())
        newest = self._runs.newest(conversation_id) if stored.leased else None
        shown = newest[0] if newest else 0
        return grant, Stamp(conversation_id, stored.turn_count, stored.revision, stored.leased, shown)

    async def load(self, actor: Actor, conversation_id: str) -> Conversation:
        """The whole conversation as stored, provider metadata included; AccessError if nothing."""
        _, conversation = await asyncio.to_thread(
            self.gate.read,
            actor,
            conversation_id,
            lambda session: repo.get_conversation(session=session, conversation_id=conversation_id),
        )
        if conversation is None:
            raise AccessError(GONE)
        return conversation

    def worst_case(self, options: GenerationOptions, *, input_images: int = 2) -> float:
        """The most the next turn with ``options`` could cost (all its variants), before it is sent."""
        return self._admission.worst_case(options, input_images=input_images)

    def image_path(self, part: ImagePart) -> Path:
        """A local file of a stored image (fetched into this replica's cache first from object
        storage): blocks, so call it from a worker thread, after checking access."""
        return self._blobs.local_path(part.sha256, part.mime_type)

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
        """Store the user's turn, then answer it: yields a Step after each, and the call's progress between.

        ``painted`` is a PNG the size of the current image, white where the edit should go
        (the brush strokes); it becomes a mask for OpenAI and a marked copy for Gemini.
        Bad input raises InputError before anything is written, and before waiting for the lease;
        access is checked with the lease, in one transaction. The turn runs in a task of its own
        (chat/conversation/runs.py): closing this iterator early leaves it running, cancelling it stops it.
        """
        keys = keys or {}
        to = None
        if conversation_id:
            images = await asyncio.to_thread(self._prepare, text, attachments)
            held = self._leases.hold(conversation_id, self._writer_check(actor, conversation_id))
        else:
            # A new conversation is the actor's own, and must belong to someone: never to a share token.
            owner_id = actor.own_id()
            images = await asyncio.to_thread(self._prepare, text, attachments)  # before a title is made of it
            to = NewConversation(self._new_id(), _title(text), owner_id)
            held = self._leases.hold_new(to.id, Grant(to.id, Access.OWNER))

        def admitted(lease: Lease[Grant]) -> tuple[Conversation, Reservation | None]:
            return self._store_message(actor, lease, to, text.strip(), images, painted, options, keys)

        work = self._turn_work(held, admitted, options, keys)
        async for step in self._runs.start(to.id if to else str(conversation_id), work):
            yield step

    async def retry(
        self,
        actor: Actor,
        conversation_id: str,
        *,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr] | None = None,
    ) -> AsyncIterator[Step]:
        """Answer the last user message again: after a failure, or for another answer.

        The new answer (or its variants) follows the previous ones and is picked; replay uses the
        picked answer, and the user's message is never duplicated. Runs like ``send``'s answer.
        """
        keys = keys or {}
        held = self._leases.hold(conversation_id, self._writer_check(actor, conversation_id))

        def admitted(lease: Lease[Grant]) -> tuple[Conversation, Reservation | None]:
            return self._admitted_retry(actor, lease, options, keys)

        async for step in self._runs.start(conversation_id, self._turn_work(held, admitted, options, keys)):
            yield step

    def _turn_work(
        self,
        held: AbstractAsyncContextManager[Lease[Grant]],
        admitted: Callable[[Lease[Grant]], tuple[Conversation, Reservation | None]],
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
    ) -> Callable[[Mailbox[Step]], Awaitable[None]]:
        """A turn's work, for its own task (chat/conversation/runs.py): under the lease, ``admitted``
        (blocking: admission and the conversation to answer, the message stored for a send), then the answer."""

        async def work(box: Mailbox[Step]) -> None:
            reservation = None
            try:
                async with held as lease:
                    conversation, reservation = await asyncio.to_thread(admitted, lease)
                    box.put(Update(Step(lease.checked, conversation, answering=True)))
                    settling, reservation = reservation, None  # settled (or released) by the answer
                    await self._answer(lease, conversation, options, keys, settling, box)
            finally:
                await self._release(reservation)

        return work

    async def stop(self, actor: Actor, conversation_id: str) -> Step:
        """Stop the conversation's turn running on this replica (its answer is stored as stopped),
        and the conversation as it is then; AccessError unless ``actor`` may write to it."""
        await asyncio.to_thread(self.gate.grant, actor, conversation_id, write=True)
        await self._runs.stop(conversation_id)
        return await self.open(actor, conversation_id)

    async def finish_running(self) -> None:
        """Wait for every turn this replica is answering (shutdown: their pages may be gone)."""
        await self._runs.wait_all()

    @property
    def running(self) -> int:
        """Turns this replica is answering now, whether or not a page still follows them."""
        return len(self._runs)

    async def _release(self, reservation: Reservation | None) -> None:
        """A turn that ends without its answer stored (refused under the lease, cut off, closed by
        the caller) gives back what it reserved; if even this never runs, the reservation expires."""
        if reservation is not None:
            await asyncio.to_thread(self._admission.release, reservation)

    def _writer_check(self, actor: Actor, conversation_id: str) -> Callable[[Session], Grant]:
        """Who may write, checked in the transaction that takes the turn's lease."""
        return lambda session: self.gate.check(session, actor, conversation_id, write=True)

    # --- steps ---------------------------------------------------------------------------

    # Each step below is blocking and runs in one worker-thread hop: a turn hands off to a thread
    # for the upload checks, each try for the lease, the message and the answer, not once per query.

    def _admitted_retry(
        self, actor: Actor, lease: Lease[Grant], options: GenerationOptions, keys: Mapping[str, SecretStr]
    ) -> tuple[Conversation, Reservation | None]:
        conversation = self.writer.stored(lease.conversation_id, lease.turn_count, lease.revision)
        if conversation is None or not any(t.role is Role.USER for t in conversation.turns):
            raise InputError("There is nothing to retry yet: send a message first.")
        return conversation, self._admission.admit(
            actor, options, keys, input_images=2, spent=conversation.cost_usd()
        )

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
        actor: Actor,
        lease: Lease[Grant],
        new: NewConversation | None,
        text: str,
        uploads: list[PreparedImage],
        painted: bytes | None,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
    ) -> tuple[Conversation, Reservation | None]:
        """Admission, then the user's turn: their photos, the painted region as a marked copy and a
        mask, their text.

        ``new`` is the conversation this write creates (and claims ``lease`` of); else the version
        read under the lease says whether the copy in memory is current (another replica may have
        appended since this one wrote it). What admission reserved comes back with the stored
        message, or is released if the message is not stored.
        """
        if new is not None:
            conversation: Conversation | NewConversation = new
            spent = 0.0
        else:
            stored = self.writer.stored(lease.conversation_id, lease.turn_count, lease.revision)
            if stored is None:
                raise AccessError(GONE)  # deleted since access was granted
            conversation, spent = stored, stored.cost_usd()
        reservation = self._admission.admit(actor, options, keys, input_images=len(uploads) + 1, spent=spent)
        try:
            return self._message(conversation, lease, new, text, uploads, painted), reservation
        except BaseException:
            if reservation is not None:
                self._admission.release(reservation)
            raise

    def _message(
        self,
        conversation: Conversation | NewConversation,
        lease: Lease[Grant],
        new: NewConversation | None,
        text: str,
        uploads: list[PreparedImage],
        painted: bytes | None,
    ) -> Conversation:
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
        return self.writer.append(conversation, [turn], images, claim=lease if new else None)

    async def _answer(
        self,
        lease: Lease[Grant],
        conversation: Conversation,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        reservation: Reservation | None,
        box: Mailbox[Step],
    ) -> None:
        """Ask the policy, showing its progress, then store the answer (which gives the lease up and
        settles the reservation); cancelled meanwhile (Stop), the calls are ended and stopped turns stored.

        With variants, the policy is asked that many times at once, each call on its own (its
        retries, its fallback, its progress entry); the answers are stored together, in one
        transaction, whatever became of each. Gemini's image models refuse ``candidateCount`` > 1
        ("Multiple candidates is not enabled", google-gemini/gemini-cli#10370), so these are
        separate requests with the same contents; OpenAI alone (Route.OPENAI) makes them in one
        call asking for ``n`` images (``FallbackPolicy.makes_many``).

        Once the calls have ended, storing their answers is not interrupted: a Stop then waits for it.
        """
        started = time.monotonic()
        grant = lease.checked

        def show(progress: tuple[Progress | None, ...]) -> None:
            step = Step(grant, conversation, answering=True, progress=progress, since=started)
            box.put(Update(step, passing=True))

        board = ProgressBoard(options.variants, show)
        calls = self._outcomes(conversation, options, keys, board)
        try:
            done: list[Answer | list[Answer]] = list(await asyncio.gather(*calls))
        except asyncio.CancelledError:
            for call in calls:
                call.cancel()
            await asyncio.wait(calls)
            done = [StoppedError() if call.cancelled() else call.result() for call in calls]
        if len(calls) < options.variants and isinstance(done[0], StoppedError):
            done = [StoppedError() for _ in range(options.variants)]  # one call stopped: all its images
        outcomes = [outcome for each in done for outcome in (each if isinstance(each, list) else [each])]
        recording = asyncio.ensure_future(
            asyncio.to_thread(self._record, conversation, outcomes, options, started, lease, reservation)
        )
        while not recording.done():
            with suppress(asyncio.CancelledError):  # a Stop now waits for the answer to be stored
                await asyncio.shield(recording)
        answered, answering = recording.result()
        box.put(Update(Step(grant, answered, answering)))

    def _outcomes(
        self,
        conversation: Conversation,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        board: ProgressBoard,
    ) -> list[asyncio.Future[Answer | list[Answer]]]:
        """The running calls: one per variant, each reporting to its own entry of the board; or one
        call for all of them where its provider makes several images at once (OpenAI's ``n``)."""
        if self._policy.makes_many(options):
            return [
                asyncio.ensure_future(self._outcome(conversation, options, keys, board.sink(0), many=True))
            ]
        return [
            asyncio.ensure_future(self._outcome(conversation, options, keys, board.sink(index)))
            for index in range(options.variants)
        ]

    async def _outcome(
        self,
        conversation: Conversation,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        progress: ProgressSink,
        *,
        many: bool = False,
    ) -> Answer | list[Answer]:
        """The policy's outcome (one per variant if ``many``); the storage error if the history's images
        could not be read; None if it broke."""
        failed: Answer
        try:
            history = through_last_user_turn(conversation.turns)
            if many:
                found = await self._policy.answer_many(
                    history, options, self._load_image, keys=keys, progress=progress
                )
                return list[Answer](found)
            return await self._policy.answer(history, options, self._load_image, keys=keys, progress=progress)
        except StorageUnavailableError as exc:
            failed = exc
        except Exception:
            log.exception("turn failed in conversation %s", conversation.id)
            failed = None
        return [failed] * options.variants if many else failed

    def _record(
        self,
        conversation: Conversation,
        outcomes: Sequence[Answer],
        options: GenerationOptions,
        started: float,
        lease: Lease[Grant],
        reservation: Reservation | None,
    ) -> tuple[Conversation, bool]:
        """The answers (or why there are none) stored with what they cost on the server's keys,
        which settles what the turn reserved (a failed turn's cost is 0; a stopped call may have been
        billed for what it generated, so the daily cap counts a stopped call at its share of what
        was reserved). Variants are numbered, and the first that succeeded is picked.

        If the image store fails to take the answers' images, they are stored as failed, with the
        storage's sentence and what the calls cost, and no image: never a row without its object.
        """
        made = [self._turn(conversation, outcome, options) for outcome in outcomes]
        share = reservation.usd / len(outcomes) if reservation else 0.0
        costs = [
            share if isinstance(outcome, StoppedError) else server_cost(turn)
            for outcome, (turn, _) in zip(outcomes, made, strict=True)
        ]
        turns = _numbered_variants([turn for turn, _ in made])
        images = [image for _, turn_images in made for image in turn_images]
        cost = sum(costs)
        for turn, each in zip(turns, costs, strict=True):
            latency_ms = (time.monotonic() - started) * 1000
            log.info(turn_log_line(conversation.id, turn, latency_ms=latency_ms, cost=each))
        try:
            try:
                answered = self.writer.append(
                    conversation, turns, images, server_cost=cost, reservation=reservation, release=lease
                )
            except StorageUnavailableError as exc:  # paid for (counted), but its images not stored
                refused = [
                    replace(self._refused(exc, options, answer=turn), variant=turn.variant) for turn in turns
                ]
                answered = self.writer.append(
                    conversation, refused, server_cost=cost, reservation=reservation, release=lease
                )
            return answered, False
        except ConversationMovedError:
            # The lease lapsed during the call and another replica's turn was stored: this answer
            # would follow it, as if it answered that one. The stored conversation is shown instead.
            log.warning(
                "answer not stored: conversation %s moved on after its lease was lost", conversation.id
            )
            with session_scope(self._engine, read_only=True) as session:
                stored, answering = self._read(session, conversation.id)
            if stored is None:
                raise AccessError(GONE) from None  # deleted meanwhile
            return stored, answering

    def _turn(
        self, conversation: Conversation, outcome: Answer, options: GenerationOptions
    ) -> tuple[Turn, list[NewImage]]:
        """One call's outcome as an answer turn and its images (a failed turn if it broke)."""
        if isinstance(outcome, StorageUnavailableError | StoppedError):
            return self._refused(outcome, options), []
        if outcome is not None:
            try:
                return answer_turn(outcome, options, model_for=self._policy.model_for, now=self._clock())
            except Exception:
                log.exception("turn failed in conversation %s", conversation.id)
        failed = failed_turn(
            "internal", INTERNAL, options, provider=None, model_for=self._policy.model_for, now=self._clock()
        )
        return failed, []

    # --- picking a variant ---------------------------------------------------------------

    async def pick(self, actor: Actor, conversation_id: str, index: int) -> Step:
        """Make the answer at turn ``index`` the one the next edit builds on (the "Use this" of a
        variant): only it is replayed among its message's answers. Takes the conversation's lease
        like a turn, in one transaction with the change (BusyError while a turn runs); needs write
        access. InputError if that turn is no answer that succeeded."""

        def work(session: Session, grant: Grant) -> Step:
            version = repo.version(session=session, conversation_id=conversation_id)
            if version is None:
                raise AccessError(GONE)
            conversation = self.writer.stored_in(session, conversation_id, *version)
            if conversation is None:
                raise AccessError(GONE)
            turns = conversation.turns
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(turns):
                raise InputError("There is no such version in this conversation.")
            if turns[index].role is not Role.ASSISTANT or turns[index].failed:
                raise InputError("Only a version that came can be used: that one failed.")
            picked = repo.pick_answer(
                session=session,
                conversation=conversation,
                index=index,
                revision=version[1],
                now=self._clock(),
            )
            return Step(grant, picked)

        step = await asyncio.to_thread(
            self._leases.once, conversation_id, self._writer_check(actor, conversation_id), work
        )
        self.writer.remember(step.conversation)
        return step

    # --- quick edits -----------------------------------------------------------------------

    async def quick_edit(
        self, actor: Actor, conversation_id: str, version_index: int | None, edit: QuickEdit
    ) -> Step:
        """Crop, rotate, flip or resize a version with Pillow: no model, no cost, so no admission.

        Stored like a message and its answer, two turns at once: the user's "rotate 90° right
        (local)" and a local answer with the edited image, picked, so nothing awaits an answer and
        the next edit builds on it (providers replay it as an image the user supplied).
        ``version_index`` is the version's turn index; None is the image the next edit would use.
        A write: under the conversation's lease and write access (a read-only link is refused),
        BusyError at once while a turn runs; InputError if the edit does not fit the version."""
        held = self._leases.hold_now(conversation_id, self._writer_check(actor, conversation_id))
        async with held as lease:
            conversation = await asyncio.to_thread(self._quick_edit, lease, version_index, edit)
        return Step(lease.checked, conversation)

    def _quick_edit(self, lease: Lease[Grant], version_index: int | None, edit: QuickEdit) -> Conversation:
        conversation = self.writer.stored(lease.conversation_id, lease.turn_count, lease.revision)
        if conversation is None:
            raise AccessError(GONE)
        if conversation.awaiting_answer():
            raise InputError(
                "The last message has no answer yet: wait for it, or press Retry, before a quick edit."
            )
        image = _version_image(conversation.turns, version_index)
        result = apply_quick_edit(self._load_image(image), edit, limits=self._limits.images)
        stored = NewImage.of(result.data, result.mime_type)
        what, now = edit.describe(), self._clock()
        request = Turn(role=Role.USER, parts=(TextPart(f"{what} (local)"),), created_at=now)
        answer = Turn(
            role=Role.ASSISTANT,
            parts=(stored.part(role=ImageRole.ANSWER),),
            provider=LOCAL_PROVIDER,
            model=what,
            usage=Usage(),
            created_at=now,
            picked=True,
        )
        return self.writer.append(conversation, [request, answer], [stored], release=lease)

    def _refused(
        self,
        error: StorageUnavailableError | StoppedError,
        options: GenerationOptions,
        *,
        answer: Turn | None = None,
    ) -> Turn:
        """A failed turn saying why (the image store failed, the user stopped it); with the
        ``answer`` the store could not take, who gave it."""
        return failed_turn(
            error.kind,
            error.user_message(),
            options,
            provider=answer.provider if answer else None,
            model_for=self._policy.model_for,
            attempts=answer.attempts if answer else (),
            now=self._clock(),
        )

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


def _version_image(turns: Sequence[Turn], index: object) -> ImagePart:
    """The image of the version at turn ``index`` (an answer with an image), from untrusted input;
    None is the newest of those the next edit builds on. InputError if there is no such version."""
    kept = {id(turn) for turn in latest_answers(turns)}
    versions = {
        n: image
        for n, turn in enumerate(turns)
        if turn.role is Role.ASSISTANT and not turn.failed and (image := turn.shown_image()) is not None
    }
    if index is None:
        latest = [image for n, image in versions.items() if id(turns[n]) in kept]
        if not latest:
            raise InputError("There is no image to edit yet: send a photo or a message first.")
        return latest[-1]
    if isinstance(index, bool) or not isinstance(index, int) or index not in versions:
        raise InputError("There is no such version in this conversation.")
    return versions[index]


def _numbered_variants(turns: Sequence[Turn]) -> list[Turn]:
    """One answer as it is (picked if it succeeded); several as variants 0, 1, … with the first
    that succeeded picked, so the next edit builds on it until "Use this" picks another."""
    first = next((n for n, turn in enumerate(turns) if not turn.failed), None)
    several = len(turns) > 1
    return [replace(turn, variant=n if several else None, picked=n == first) for n, turn in enumerate(turns)]


def _title(text: str) -> str:
    line = one_line(text)
    if not line:
        return "Untitled edit"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "\u2026"
