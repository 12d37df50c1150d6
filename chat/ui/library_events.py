"""Handlers for the panels around the chat: my conversations, sharing, versions, export/import."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import gradio as gr

from chat.conversation.service import ChatService
from chat.domain import Conversation
from chat.errors import InputError, RetouchError
from chat.media.quick_edits import parse_quick_edit
from chat.sharing.access import Access, Actor, Grant
from chat.sharing.library import ConversationLibrary
from chat.ui.events import Handlers, PageUpdate, Show, Shown, log_refusal
from chat.ui.files import FileMaker
from chat.ui.owner import page_owner
from chat.ui.render import undo_target, versions
from chat.ui.uploads import read_uploads

__all__ = ["LibraryHandlers"]

MAX_IMPORT_BYTES = 200 * 1024 * 1024


class LibraryHandlers:
    def __init__(
        self, page: Handlers, service: ChatService, library: ConversationLibrary, files: FileMaker
    ) -> None:
        self._page = page
        self._service = service
        self._library = library
        self._files = files

    async def on_search(self, owner: str, query: str, profile: gr.OAuthProfile | None = None) -> PageUpdate:
        owner = page_owner(owner, profile)
        return await self._page.gallery(Actor(owner), query if isinstance(query, str) else "")

    async def on_rename(
        self,
        owner: str,
        conversation_id: str,
        title: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        return await self._owner_action(owner, conversation_id, request, RENAMED, self._library.rename, title)

    async def on_share_view(
        self, owner: str, conversation_id: str, request: gr.Request, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        return await self._owner_action(
            owner, conversation_id, request, Show.LINKS, self._library.share, "view"
        )

    async def on_share_continue(
        self, owner: str, conversation_id: str, request: gr.Request, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        share = self._library.share
        return await self._owner_action(owner, conversation_id, request, Show.LINKS, share, "continue")

    async def on_duplicate(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        return await self.on_fork(owner, conversation_id, share_token, None, request)

    async def on_revoke(
        self,
        owner: str,
        conversation_id: str,
        token: str | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        if not token:
            return await self._page.view(Shown(Actor(owner)), Show(0), status="Choose a link to revoke.")
        return await self._owner_action(
            owner, conversation_id, request, Show.LINKS, self._library.revoke, token
        )

    async def on_delete(
        self, owner: str, conversation_id: str, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        actor = Actor(owner)
        try:
            await self._library.delete(actor, conversation_id)
            status = "Deleted."
        except RetouchError as exc:
            log_refusal("delete", exc)
            status = exc.user_message()
        return await self._page.view(Shown(actor), status=status)

    async def on_fork(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        through: int | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """ "Duplicate" (through=None) or "Edit from here" (a version's turn index)."""
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None)
        try:
            copy = await self._library.fork(actor, conversation_id, through_seq=through)
        except RetouchError as exc:
            log_refusal("fork", exc)
            return await self._show(actor, conversation_id, request, status=exc.user_message())
        label = next((lbl.split(" ")[0] for lbl, seq in versions(copy) if seq == through), None)
        status = (
            f"This is a new branch: your next edit starts from {label}. The original is unchanged."
            if through is not None
            else "This is your own copy; the shared original is unchanged."
        )
        return await self._page.view(_own(owner, copy), status=status, request=request, links=())

    async def on_undo(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """Undo a quick edit in one click: "Edit from here" on the version before it (a new branch;
        the conversation with the edit stays as it is)."""
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None)
        try:
            target = undo_target(await self._service.load(actor, conversation_id))
        except RetouchError as exc:
            log_refusal("undo", exc)
            return await self._show(actor, conversation_id, request, status=exc.user_message())
        if target is None:
            return await self._show(
                actor, conversation_id, request, status="The newest version is no quick edit."
            )
        return await self.on_fork(owner, conversation_id, share_token, target[1], request)

    async def on_version(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        index: int | None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple[tuple[str, str] | None, gr.DownloadButton]:
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None)
        if index is None or not conversation_id:
            return None, gr.DownloadButton(value=None)
        try:
            conversation = await self._service.load(actor, conversation_id)
        except RetouchError as exc:
            log_refusal("version", exc)
            return None, gr.DownloadButton(value=None)
        labels = {seq: label.split(" ")[0] for label, seq in versions(conversation)}
        if index not in labels:
            return None, gr.DownloadButton(value=None)
        try:  # staging fetches from object storage: in a worker thread
            png, pair = await asyncio.to_thread(
                lambda: (
                    self._files.png(conversation, index, labels[index]),
                    self._files.compare(conversation, index),
                )
            )
        except RetouchError as exc:
            log_refusal("version", exc)
            return None, gr.DownloadButton(value=None)
        return pair, gr.DownloadButton(value=png)

    def fixed_edit(self, edit: Mapping[str, Any]) -> Callable[[str, str, str, object], Awaitable[PageUpdate]]:
        """The handler of a button that always makes the same quick edit (Rotate left, Flip ↔, …)."""

        async def apply(
            owner: str,
            conversation_id: str,
            share_token: str,
            index: object,
            profile: gr.OAuthProfile | None = None,
        ) -> PageUpdate:
            return await self.on_quick_edit(owner, conversation_id, share_token, index, edit, profile)

        return apply

    async def on_crop(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        index: object,
        left: object,
        top: object,
        right: object,
        bottom: object,
        unit: object,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        box = {"left": left, "top": top, "right": right, "bottom": bottom}
        edit = {"kind": "crop", **box, "unit": "percent" if unit == "%" else unit}
        return await self.on_quick_edit(owner, conversation_id, share_token, index, edit, profile)

    async def on_resize(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        index: object,
        width: object,
        height: object,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        # The page shows an empty number as 0: a side at 0 (or empty) keeps the shape.
        edit = {"kind": "resize", "width": width or None, "height": height or None}
        return await self.on_quick_edit(owner, conversation_id, share_token, index, edit, profile)

    async def on_quick_edit(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        index: object,
        edit: object,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """A quick edit of the version chosen in Versions (the newest if none): the new version shows
        at once in the chat and the versions; a refusal says why in the chat."""
        actor = Actor(page_owner(owner, profile), share_token or None)
        try:
            if not conversation_id:
                raise InputError("Open a conversation with an image first.")
            parsed = parse_quick_edit(edit)
            step = await self._service.quick_edit(actor, conversation_id, _version(index), parsed)
        except RetouchError as exc:
            return await self._page.refusal(actor, conversation_id, exc, event="quick edit")
        label = versions(step.conversation)[-1][0]
        status = f"New version {label}. Undo is one click, under Quick edit."
        return await self._page.view(Shown.of(actor, step), QUICK_EDITED, status=status)

    async def on_export(
        self, owner: str, conversation_id: str, share_token: str, profile: gr.OAuthProfile | None = None
    ) -> tuple[gr.File, str]:
        owner = page_owner(owner, profile)
        if not conversation_id:
            return gr.File(visible=False), "Open a conversation to export it."
        try:
            name, data = await self._library.export(Actor(owner, share_token or None), conversation_id)
        except RetouchError as exc:
            log_refusal("export", exc)
            return gr.File(visible=False), exc.user_message()
        path = await asyncio.to_thread(self._files.save, name, data)
        return gr.File(
            value=path, visible=True
        ), f"Exported {len(data) / 1e6:.1f} MB: images and a JSON transcript."

    async def on_import(
        self, owner: str, upload: object, request: gr.Request, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        owner = page_owner(owner, profile)
        actor = Actor(owner)
        try:
            [zip_file] = await asyncio.to_thread(read_uploads, [upload], max_bytes=MAX_IMPORT_BYTES)
            if not zip_file.name.lower().endswith(".zip"):
                raise InputError("Import takes a .zip exported from Retouch.")
            conversation = await self._library.import_zip(actor, zip_file.data)
        except RetouchError as exc:
            return await self._page.view(Shown(actor), status=exc.user_message(), request=request)
        status = f"Imported \u201c{conversation.title}\u201d ({len(conversation.turns)} turns)."
        return await self._page.view(_own(owner, conversation), status=status, request=request, links=())

    async def _owner_action(
        self,
        owner: str,
        conversation_id: str,
        request: gr.Request,
        changed: Show,
        action: Callable[[Actor, str, str], Awaitable[object]],
        *args: str,
    ) -> PageUpdate:
        """Do it, then show what it ``changed``; a refusal shows the conversation afresh (or none)."""
        actor = Actor(owner)
        try:
            await action(actor, conversation_id, *args)
            if changed is Show.LINKS:  # the conversation is as shown: read its links (checked: the owner's)
                links = await self._library.links(actor, conversation_id)
                shown = Shown(actor, grant=Grant(conversation_id, Access.OWNER))
                return await self._page.view(shown, changed, request=request, links=links)
        except RetouchError as exc:
            log_refusal(action.__name__, exc)
            return await self._show(actor, conversation_id, request, status=exc.user_message())
        return await self._show(actor, conversation_id, request, changed)

    async def _show(
        self,
        actor: Actor,
        conversation_id: str,
        request: gr.Request,
        show: Show = Show.ALL,
        *,
        status: str = "",
    ) -> PageUpdate:
        try:
            opened = await self._service.open(actor, conversation_id)
        except RetouchError as exc:
            log_refusal("open", exc)
            return await self._page.view(Shown(Actor(actor.owner_id)), status=exc.user_message())
        return await self._page.view(Shown.of(actor, opened), show, status=status, request=request)


#: A quick edit adds a version: the chat, the versions, and the conversation's thumbnail.
QUICK_EDITED = Show.CHAT | Show.VERSIONS | Show.GALLERY


def _version(index: object) -> int | None:
    """The turn index the versions' choice sent (the service checks it names a version); None: the
    newest; anything but a number names no version (-1), which the service says."""
    if index is None or index == "":
        return None
    return index if isinstance(index, int) and not isinstance(index, bool) else -1


#: A new title shows in the caption, the title box and "My conversations" (which it may reorder).
RENAMED = Show.CHAT | Show.ACCESS | Show.GALLERY


def _own(owner: str, conversation: Conversation) -> Shown:
    """A fork or an import: a new conversation of the actor's own (theirs to do anything with; no links yet)."""
    return Shown(Actor(owner), conversation, Grant(conversation.id, Access.OWNER))
