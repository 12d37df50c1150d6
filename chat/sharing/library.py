"""A visitor's conversations: list, rename, delete, share, fork, export and import.

Turn-taking lives in ``chat.conversation.service``; this is everything around it. Every method checks
the actor's rights through the Gatekeeper first, so the UI and the API cannot differ.
"""

from __future__ import annotations

import asyncio
import builtins  # the method ``list`` shadows the type inside the class
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.conversation.service import InputLimits, new_conversation_id
from chat.conversation.turns import NewConversation, NewImage, TurnWriter
from chat.domain import Conversation, ConversationSummary, ShareLink
from chat.errors import AccessError, InputError
from chat.limits.guard import Guard, counted_as
from chat.sharing.access import OWNER_ID, Access, Actor, Gatekeeper, Grant, is_account, new_share_token
from chat.sharing.transfer import ImportedConversation, ImportLimits, export_zip, import_zip
from chat.text import one_line
from storage import BlobStore, session_scope
from storage import repository as repo
from storage.models import TITLE_MAX_LENGTH

__all__ = ["ConversationLibrary"]

T = TypeVar("T")


class ConversationLibrary:
    def __init__(
        self,
        *,
        engine: Engine,
        blobs: BlobStore,
        gate: Gatekeeper,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = new_conversation_id,
        input_limits: InputLimits | None = None,
        guard: Guard | None = None,
        writer: TurnWriter | None = None,
    ) -> None:
        """``writer``: the service's (``ChatService.writer``), so imports are stored as every turn is."""
        self._engine = engine
        self._blobs = blobs
        self._gate = gate
        self._clock = clock
        self._new_id = new_id
        self._import_limits = _import_limits(input_limits or InputLimits())
        self._guard = guard
        self._writer = writer or TurnWriter(engine=engine, blobs=blobs, clock=clock)

    async def count_owned(self, owner_id: str) -> int:
        """How many conversations ``owner_id`` (a browser's or an account's) has."""
        return await asyncio.to_thread(self._count_owned, owner_id)

    def _count_owned(self, owner_id: str) -> int:
        with session_scope(self._engine, read_only=True) as session:
            return repo.count_owned(session=session, owner_id=owner_id)

    async def adopt(self, account_id: str, browser_id: str) -> int:
        """A signed-in visitor takes this browser's conversations into their account (when asked,
        never silently: chat/ui/signin.py); how many moved. Only from a browser id to an account."""
        if not is_account(account_id) or not OWNER_ID.fullmatch(browser_id):
            raise AccessError("Sign in to add this browser\u2019s conversations to your account.")
        return await asyncio.to_thread(self._adopt, account_id, browser_id)

    def _adopt(self, account_id: str, browser_id: str) -> int:
        with session_scope(self._engine) as session:
            return repo.move_conversations(session=session, from_owner=browser_id, to_owner=account_id)

    async def list(self, actor: Actor, query: str = "", limit: int = 100) -> list[ConversationSummary]:
        """The actor's own conversations, newest first; ``query`` filters titles. A share token owns none."""
        if not actor.owner_id:
            return []
        return await asyncio.to_thread(self._list, actor.owner_id, query, limit)

    async def rename(self, actor: Actor, conversation_id: str, title: str) -> None:
        title = one_line(title) if isinstance(title, str) else ""
        if not title:
            raise InputError("A title cannot be empty.")
        if len(title) > TITLE_MAX_LENGTH:
            raise InputError(f"A title can be at most {TITLE_MAX_LENGTH} characters.")
        await self._as_owner(
            actor,
            conversation_id,
            lambda session, now: repo.rename_conversation(
                session=session, conversation_id=conversation_id, title=title, now=now
            ),
        )

    async def delete(self, actor: Actor, conversation_id: str) -> None:
        await self._as_owner(
            actor,
            conversation_id,
            lambda session, now: repo.delete_conversation(session=session, conversation_id=conversation_id),
        )

    async def share(self, actor: Actor, conversation_id: str, kind: str) -> ShareLink:
        """A new link: "view" (read-only) or "continue" (teammates can send too)."""
        if kind not in ("view", "continue"):
            raise InputError("A share link is either read-only (view) or continue.")
        token = new_share_token()
        return await self._as_owner(
            actor,
            conversation_id,
            lambda session, now: repo.create_share_link(
                session=session, conversation_id=conversation_id, token=token, kind=kind, now=now
            ),
        )

    async def links(self, actor: Actor, conversation_id: str) -> builtins.list[ShareLink]:
        return await self._as_owner(
            actor,
            conversation_id,
            lambda session, now: repo.share_links(session=session, conversation_id=conversation_id),
            read_only=True,
        )

    async def links_of(self, grant: Grant) -> builtins.list[ShareLink]:
        """The links of the conversation an owner's ``grant`` (from the service) is for, without
        checking access again: one read-only transaction."""
        if grant.access is not Access.OWNER:
            raise AccessError("Only the owner of this conversation can do that.")
        return await asyncio.to_thread(self._links, grant.conversation_id)

    async def revoke(self, actor: Actor, conversation_id: str, token: str) -> bool:
        return await self._as_owner(
            actor,
            conversation_id,
            lambda session, now: repo.revoke_share_link(
                session=session, conversation_id=conversation_id, token=token, now=now
            ),
        )

    async def fork(
        self, actor: Actor, conversation_id: str, *, through_seq: int | None = None
    ) -> Conversation:
        """A new conversation of the actor's own with the history up to ``through_seq``.

        Any grant may fork (that is how a read-only viewer edits: "Duplicate"); the copy belongs
        to the actor's own owner id, never to the share token they came with. The original is
        never touched.
        """
        owner_id = actor.own_id()
        await asyncio.to_thread(self._gate.grant, actor, conversation_id)
        await self._admit(actor, "copy")
        return await asyncio.to_thread(self._fork, owner_id, conversation_id, through_seq)

    async def export(self, actor: Actor, conversation_id: str) -> tuple[str, bytes]:
        """A zip of the images (exact bytes) and a JSON transcript; (file name, bytes)."""
        await asyncio.to_thread(self._gate.grant, actor, conversation_id)
        return await asyncio.to_thread(self._export, conversation_id)

    async def import_zip(self, actor: Actor, data: bytes) -> Conversation:
        """A new conversation of the actor's own from an exported zip (chat/sharing/transfer.py checks it)."""
        owner_id = actor.own_id()
        await self._admit(actor, "copy")
        imported = await asyncio.to_thread(import_zip, data, limits=self._import_limits)
        return await asyncio.to_thread(self._store_import, owner_id, imported)

    async def _admit(self, actor: Actor, work: str) -> None:
        """Imports and forks write whole conversations: the visitor rate limits apply to them too."""
        if self._guard is not None:
            await asyncio.to_thread(
                self._guard.admit, counted_as(actor, work), server_cost=0.0, what="copies and imports"
            )

    # --- blocking helpers (run in a worker thread) ------------------------------------------------

    def _export(self, conversation_id: str) -> tuple[str, bytes]:
        with session_scope(self._engine, read_only=True) as session:
            conversation = repo.get_conversation(session=session, conversation_id=conversation_id)
        if conversation is None:
            raise InputError("That conversation no longer exists.")
        data = export_zip(
            conversation, lambda p: self._blobs.read(p.sha256, p.mime_type), exported_at=self._clock()
        )
        return f"{_slug(conversation.title)}.zip", data

    def _store_import(self, owner_id: str, imported: ImportedConversation) -> Conversation:
        """A new conversation holding the imported turns and images, written as every turn is."""
        images = [NewImage.of(data, mime) for data, mime in imported.images.values()]
        new = NewConversation(self._new_id(), imported.title, owner_id)
        return self._writer.append(new, imported.turns, images)

    def _links(self, conversation_id: str) -> builtins.list[ShareLink]:
        with session_scope(self._engine, read_only=True) as session:
            return repo.share_links(session=session, conversation_id=conversation_id)

    def _list(self, owner_id: str, query: str, limit: int) -> builtins.list[ConversationSummary]:
        with session_scope(self._engine, read_only=True) as session:
            return repo.list_conversations(session=session, owner_id=owner_id, query=query, limit=limit)

    async def _as_owner(
        self,
        actor: Actor,
        conversation_id: str,
        operation: Callable[[Session, datetime], T],
        *,
        read_only: bool = False,
    ) -> T:
        """Check ownership, then run ``operation`` in one transaction, off the event loop; a
        ``read_only`` one never takes the write lock (SQLite: BEGIN, not BEGIN IMMEDIATE)."""

        def run() -> T:
            if read_only:  # the check and the read in one transaction
                query = lambda session: operation(session, self._clock())  # noqa: E731
                return self._gate.read(actor, conversation_id, query, owner=True)[1]
            self._gate.grant(actor, conversation_id, owner=True)
            with session_scope(self._engine) as session:
                return operation(session, self._clock())

        return await asyncio.to_thread(run)

    def _fork(self, owner_id: str, source_id: str, through_seq: int | None) -> Conversation:
        with session_scope(self._engine) as session:
            source = repo.get_conversation(session=session, conversation_id=source_id)
            if source is None:
                raise InputError("That conversation no longer exists.")
            if through_seq is not None and not 0 <= through_seq < len(source.turns):
                raise InputError("That version is not part of the conversation.")
            prefix = "Branch of" if through_seq is not None else "Copy of"
            title = f"{prefix} {source.title}"[:TITLE_MAX_LENGTH]
            return repo.copy_conversation(
                session=session,
                source_id=source_id,
                new_id=self._new_id(),
                title=title,
                owner_id=owner_id,
                now=self._clock(),
                through_seq=through_seq,
            )


def _import_limits(limits: InputLimits) -> ImportLimits:
    """What is imported is held to what may be typed and uploaded: message length, pixels, images."""
    return ImportLimits(
        max_prompt_chars=limits.max_prompt_chars,
        max_pixels=limits.images.max_pixels,
        max_parts=max(ImportLimits.max_parts, limits.max_images_per_message + 3),  # + text, mask, marked
    )


def _slug(title: str) -> str:
    """A safe file name from a title: letters, digits and dashes."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return f"retouch-{slug[:60] or 'conversation'}"
