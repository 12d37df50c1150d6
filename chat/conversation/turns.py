"""The one turn writer: every turn (a message, an answer, an import) reaches storage through here.

Images first, to the blob store and outside any transaction; then the rows in one transaction:
the conversation if it is new, the image rows, the turns, and what the answer cost on the
server's keys. So a turn is never stored without its images, and the write lock is held for
rows only. The writer also remembers each conversation as it last wrote it (chat/conversation/recent.py),
so the next turn of a conversation does not read it back unless another replica wrote since.

A write-once store (S3) cannot make an image it holds already young for the orphan sweep when a
turn stores it again (``Put.young`` is False). The writer then records the image's row first, in
a transaction of its own, and only then checks that the object is still there (putting it again
if a sweep took it meanwhile): the sweep deletes an object only while it holds the image's row
in a transaction of its own and finds no row (chat/server/maintenance.py), so once the row is
committed no sweep can take the object, and a sweep that took it before is seen.

A turn's lease (chat/conversation/leases.py) is claimed in the transaction that creates its
conversation and released in the one that stores its answer, so neither costs a transaction of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.conversation.leases import Lease
from chat.conversation.recent import RecentConversations
from chat.domain import Conversation, ImagePart, ImageRole, Metadata, Turn, frozen_metadata
from chat.errors import ConversationMovedError
from chat.limits.guard import Guard, Reservation
from chat.media.images import image_size
from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["NewConversation", "NewImage", "TurnWriter"]


@dataclass(frozen=True)
class NewImage:
    """Image bytes a turn brings, with what the image's row records."""

    sha256: str
    mime_type: str
    data: bytes
    width: int
    height: int

    @classmethod
    def of(cls, data: bytes, mime_type: str, *, sha256: str | None = None) -> NewImage:
        """ValueError if ``data`` is not an image (its header is read, not the pixels); ``sha256``
        is the data's, when the caller worked it out already."""
        width, height = image_size(data)
        return cls(sha256 or hashlib.sha256(data).hexdigest(), mime_type, data, width, height)

    def part(self, *, role: ImageRole, thought: bool = False, metadata: Metadata | None = None) -> ImagePart:
        return ImagePart(
            self.sha256,
            self.mime_type,
            role=role,
            thought=thought,
            provider_metadata=frozen_metadata(metadata),
        )


@dataclass(frozen=True)
class NewConversation:
    """A conversation the first write creates."""

    id: str
    title: str
    owner_id: str


class TurnWriter:
    def __init__(
        self, *, engine: Engine, blobs: BlobStore, clock: Callable[[], datetime], guard: Guard | None = None
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._clock = clock
        self._guard = guard
        self._written = RecentConversations()

    def stored(
        self, conversation_id: str, turn_count: int | None, revision: int | None = None
    ) -> Conversation | None:
        """The conversation as stored: as this writer last wrote it if that copy holds the
        ``turn_count`` turns stored now and their ``revision`` (both read under the turn's lease:
        a pick on another replica changes the revision only), else loaded."""
        if (conversation := self._current(conversation_id, turn_count, revision)) is not None:
            return conversation
        with session_scope(self._engine, read_only=True) as session:
            return repo.get_conversation(session=session, conversation_id=conversation_id)

    def stored_in(
        self, session: Session, conversation_id: str, turn_count: int, revision: int
    ) -> Conversation | None:
        """``stored``, loaded (if need be) in the caller's transaction."""
        if (conversation := self._current(conversation_id, turn_count, revision)) is not None:
            return conversation
        return repo.get_conversation(session=session, conversation_id=conversation_id)

    def _current(
        self, conversation_id: str, turn_count: int | None, revision: int | None
    ) -> Conversation | None:
        conversation = self._written.get(conversation_id)
        if (
            conversation is not None
            and len(conversation.turns) == turn_count
            and (revision is None or conversation.revision == revision)
        ):
            return conversation
        return None

    def append(
        self,
        to: Conversation | NewConversation,
        turns: Sequence[Turn],
        images: Sequence[NewImage] = (),
        *,
        server_cost: float = 0.0,
        reservation: Reservation | None = None,
        claim: Lease[Any] | None = None,
        release: Lease[Any] | None = None,
    ) -> Conversation:
        """``turns`` at the end of ``to`` (created first if new), with their images and their cost,
        which settles what the turn reserved against the daily cap (``reservation``); ``claim`` is
        the lease of a conversation this write creates, ``release`` the lease of a turn this write ends.

        Turns added to a stored conversation (a message, an answer, its variants) come back appended
        to the conversation given, without reading it again; many in a new one (an import) are read
        back after the transaction, so the write lock is held no longer than needed.
        ConversationMovedError if the stored conversation has turns ``to`` lacks (the turn's lease
        was lost meanwhile): nothing is stored but what it cost on the server's keys.
        """
        if isinstance(to, Conversation) and not to.replayable:
            raise ValueError(
                "a conversation loaded to be shown lacks its signatures: load it to append to it"
            )
        kept_only: list[NewImage] = []  # stored already, and not made young by this put
        for image in images:
            put = self._blobs.put(image.data, image.mime_type)
            if put.sha256 != image.sha256:
                raise ValueError(f"image {image.sha256[:12]} changed before it was stored")
            if not put.young:
                kept_only.append(image)
        if kept_only:
            self._keep(kept_only)
        try:
            conversation = self._write(to, turns, images, server_cost, reservation, claim, release)
        except ConversationMovedError:
            self._written.forget(to.id)
            if self._guard is not None:  # paid for, though not stored
                with session_scope(self._engine) as session:
                    self._guard.settle(reservation, server_cost, session=session)
            raise
        if len(turns) != 1 and isinstance(to, NewConversation):
            with session_scope(self._engine, read_only=True) as session:
                reloaded = repo.get_conversation(session=session, conversation_id=to.id)
            if reloaded is None:
                raise repo.ConversationNotFoundError(to.id)
            conversation = reloaded
        self._written.put(conversation)
        return conversation

    def remember(self, conversation: Conversation) -> None:
        """A change stored by someone else than ``append`` (a pick), so the next turn's copy is current."""
        self._written.put(conversation)

    def _keep(self, images: Sequence[NewImage]) -> None:
        """Images a write-once store held already, kept from the sweep: their rows (renewed)
        first, then each object checked, and put again if a sweep deleted it before the rows were in."""
        with session_scope(self._engine) as session:
            _save_images(session, images, self._clock())
        for image in images:
            if not self._blobs.exists(image.sha256, image.mime_type):
                self._blobs.put(image.data, image.mime_type)

    def _write(
        self,
        to: Conversation | NewConversation,
        turns: Sequence[Turn],
        images: Sequence[NewImage],
        server_cost: float,
        reservation: Reservation | None,
        claim: Lease[Any] | None,
        release: Lease[Any] | None,
    ) -> Conversation:
        """The rows, in one transaction; ``to`` itself for many turns in a new one (read back by the caller)."""
        now = self._clock()
        with session_scope(self._engine) as session:
            if self._guard is not None:
                self._guard.settle(reservation, server_cost, session=session)
            _save_images(session, images, now)
            conversation = (
                repo.create_conversation(
                    session=session, conversation_id=to.id, title=to.title, now=now, owner_id=to.owner_id
                )
                if isinstance(to, NewConversation)
                else to
            )
            if claim is not None:
                claim.claim(session)
            if len(turns) == 1 or isinstance(to, Conversation):
                conversation = repo.append_all_to(
                    session=session, conversation=conversation, turns=turns, now=now
                )
            else:
                repo.append_turns(session=session, conversation_id=conversation.id, turns=turns, now=now)
            if release is not None:
                release.release(session)
        return conversation


def _save_images(session: Session, images: Sequence[NewImage], now: datetime) -> None:
    # In one order everywhere: storing an image locks its row (repository.save_image), so two
    # turns storing the same images lock them in the same order and never deadlock.
    for image in sorted(images, key=lambda image: image.sha256):
        repo.save_image(
            session=session,
            sha256=image.sha256,
            mime_type=image.mime_type,
            width=image.width,
            height=image.height,
            size_bytes=len(image.data),
            now=now,
        )
