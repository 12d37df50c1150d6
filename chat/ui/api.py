"""The documented API (gradio_client): thin wrappers over the service and the library.

Every endpoint takes ``key``: your owner key (returned by the first ``/send`` that
creates a conversation, or any secret of your own: 16-100 letters, digits, ``-`` or ``_``)
or a share token. Rights are checked by the same Gatekeeper as the UI, so a read-only token
can never write, and a share token never owns anything: forking through one takes your own
key as ``owner_key``. Refusals are one log line and a ``gr.Error`` with the reason.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NoReturn

import gradio as gr

from chat.conversation.options import parse_options
from chat.conversation.service import ChatService, Step
from chat.domain import Conversation, GenerationOptions, Route
from chat.errors import AccessError, InputError, RetouchError
from chat.limits.visitors import TrustedProxies
from chat.media.images import painted_from_mask
from chat.media.quick_edits import parse_quick_edit
from chat.sharing.access import OWNER_ID, Actor, new_owner_id
from chat.sharing.library import ConversationLibrary
from chat.ui.events import client_address, visitor_keys
from chat.ui.files import FileMaker
from chat.ui.progress import turn_progress_json
from chat.ui.render import to_transcript
from chat.ui.uploads import file_path, read_uploads
from chat.ui.variants import labels

__all__ = ["ApiHandlers", "streamed"]

log = logging.getLogger("retouch.api")
BAD_KEY = (
    "Pass your owner key or a share token as key: 16-100 letters, digits, - or _ "
    "(a new conversation started without a key returns one as owner_key)."
)


class ApiHandlers:
    def __init__(
        self,
        service: ChatService,
        library: ConversationLibrary,
        *,
        default_model: str,
        default_openai_model: str,
        max_upload_bytes: int,
        proxies: TrustedProxies,
        files: FileMaker,
    ) -> None:
        self._service = service
        self._library = library
        self._gate = service.gate
        self._proxies = proxies
        self._files = files
        self._default_model = default_model
        self._default_openai_model = default_openai_model
        self._max_upload_bytes = max_upload_bytes

    async def send(
        self,
        conversation_id: str,
        text: str,
        images: list[gr.FileData] | None = None,
        options: dict[str, Any] | None = None,
        mask: gr.FileData | None = None,
        key: str = "",
        gemini_key: str = "",
        openai_key: str = "",
        request: gr.Request | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Send a message ("" as conversation_id starts a new one); returns the transcript.

        While the turn runs, the transcript comes again at each step (``client.submit``: the
        message stored, then the call's progress under "progress"); the last is the finished one.

        images: photos to attach. mask: a PNG the size of the current image whose transparent
        pixels mark where the edit goes. key: your owner key or a "continue" share token; a new
        conversation without a key gets a fresh owner key, returned as "owner_key".
        gemini_key / openai_key: your own provider keys, for this call only (never stored).
        """
        new_key = "" if key or conversation_id else new_owner_id()
        try:
            # A key made just now is nobody's share token: no need to look it up.
            actor = (
                Actor(new_key, visitor=self._address(request)) if new_key else await self._actor(key, request)
            )
            parsed = self._parse(options)
            paths = [file_path(f) for f in images or []]
            attachments = (
                await asyncio.to_thread(read_uploads, paths, max_bytes=self._max_upload_bytes)
                if paths
                else []
            )
            painted = None
            if mask is not None:
                [mask_file] = await asyncio.to_thread(
                    read_uploads, [file_path(mask)], max_bytes=self._max_upload_bytes
                )
                painted = await asyncio.to_thread(painted_from_mask, mask_file.data)
            steps = self._service.send(
                actor,
                conversation_id or None,
                text,
                attachments,
                options=parsed,
                painted=painted,
                keys=visitor_keys(gemini_key, openai_key),
            )
            extra = {"owner_key": new_key} if new_key else {}
            async for transcript in _transcripts(steps, _working_model(parsed), extra):
                yield transcript
        except RetouchError as exc:
            _refuse("send", exc)

    async def retry(
        self,
        conversation_id: str,
        options: dict[str, Any] | None = None,
        key: str = "",
        gemini_key: str = "",
        openai_key: str = "",
        request: gr.Request | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer the last message again (after a failure, or for another variant); returns the
        transcript, streamed like ``send``'s."""
        try:
            actor = await self._actor(key, request)
            keys = visitor_keys(gemini_key, openai_key)
            parsed = self._parse(options)
            steps = self._service.retry(actor, conversation_id, options=parsed, keys=keys)
            async for transcript in _transcripts(steps, _working_model(parsed)):
                yield transcript
        except RetouchError as exc:
            _refuse("retry", exc)

    async def stop(
        self, conversation_id: str, key: str = "", request: gr.Request | None = None
    ) -> dict[str, Any]:
        """Stop the answer being made for the conversation (its message stays; the turn is stored as
        stopped; /retry asks again); returns the transcript. A read-only token is refused."""
        try:
            step = await self._service.stop(await self._actor(key, request), conversation_id)
        except RetouchError as exc:
            _refuse("stop", exc)
        return to_transcript(step.conversation)

    async def pick(self, conversation_id: str, version: str = "", key: str = "") -> dict[str, Any]:
        """ "Use this": the variant the next edit builds on; returns the transcript.

        version: a version label from the transcript ("v3b"), or a turn index ("4"). Only an answer
        that succeeded can be picked; refused while a turn of the conversation runs, and for a
        read-only link.
        """
        try:
            actor = await self._actor(key)
            conversation = await self._service.load(actor, conversation_id)
            step = await self._service.pick(actor, conversation_id, _turn_index(conversation, version))
        except RetouchError as exc:
            _refuse("pick", exc)
        return to_transcript(step.conversation)

    async def quick_edit(
        self, conversation_id: str, version: str = "", edit: dict[str, Any] | None = None, key: str = ""
    ) -> dict[str, Any]:
        """Crop, rotate, flip or resize a version with Pillow: instant, free, no model; returns the
        transcript, whose last turn is the new version (provider "local", model what the edit did).

        version: a version label from the transcript ("v3"), a turn index ("4"), or "" for the image
        the next edit would use. edit, one of: {"kind": "rotate", "degrees": 90 | 180 | 270}
        (clockwise); {"kind": "flip", "direction": "horizontal" | "vertical"}; {"kind": "crop",
        "left": 0, "top": 0, "right": 50, "bottom": 100, "unit": "px" | "percent"} (the box kept);
        {"kind": "resize", "width": 512, "height": null} (16-4096 px; a null side keeps the shape).
        Refused for a read-only link, and while an answer is being made.
        """
        try:
            actor = await self._actor(key)
            parsed = parse_quick_edit(edit)
            index = None
            if version not in ("", None):
                index = _turn_index(await self._service.load(actor, conversation_id), version)
            step = await self._service.quick_edit(actor, conversation_id, index, parsed)
        except RetouchError as exc:
            _refuse("quick_edit", exc)
        return to_transcript(step.conversation)

    async def conversation(self, conversation_id: str, key: str = "") -> dict[str, Any]:
        """The stored transcript of a conversation."""
        try:
            return to_transcript(await self._service.load(await self._actor(key), conversation_id))
        except RetouchError as exc:
            _refuse("conversation", exc)

    async def image(self, conversation_id: str, sha256: str, key: str = "") -> gr.FileData:
        """Download one image of a conversation (the stored master, as received)."""
        try:
            conversation = await self._service.load(await self._actor(key), conversation_id)
            parts = [p for t in conversation.turns for p in t.images() if p.sha256 == sha256]
            if not parts:
                raise InputError("No such image in that conversation.")
            path = await asyncio.to_thread(self._files.download, parts[0])
        except RetouchError as exc:
            _refuse("image", exc)
        return gr.FileData(path=path, mime_type=parts[0].mime_type)

    async def share(self, conversation_id: str, kind: str = "view", key: str = "") -> str:
        """Create a share link token: kind "view" (read-only) or "continue". Owner only."""
        try:
            return (await self._library.share(await self._actor(key), conversation_id, kind)).token
        except RetouchError as exc:
            _refuse("share", exc)

    async def revoke(self, conversation_id: str, token: str, key: str = "") -> bool:
        """Revoke a share link. Owner only."""
        try:
            return await self._library.revoke(await self._actor(key), conversation_id, token)
        except RetouchError as exc:
            _refuse("revoke", exc)

    async def fork(
        self,
        conversation_id: str,
        through_turn: int = -1,
        key: str = "",
        owner_key: str = "",
        request: gr.Request | None = None,
    ) -> dict[str, Any]:
        """Copy a conversation (up to turn index ``through_turn``, or all with -1) into one of your own.

        key: your owner key, or a share token of the conversation; with a share token, owner_key
        is your own owner key, which the copy belongs to (a copy never belongs to a link).
        """
        try:
            actor = await self._actor(key, request)
            if owner_key and not actor.owner_id:
                owner = await self._actor(owner_key)
                actor = Actor(owner.owner_id, actor.share_token, actor.visitor)
            through = None if through_turn < 0 else through_turn
            copy = await self._library.fork(actor, conversation_id, through_seq=through)
        except RetouchError as exc:
            _refuse("fork", exc)
        return to_transcript(copy)

    async def conversations(self, key: str, query: str = "") -> list[dict[str, Any]]:
        """Your conversations, newest first."""
        try:
            summaries = await self._library.list(await self._actor(key), query)
        except RetouchError as exc:
            _refuse("conversations", exc)
        return [{"conversation_id": s.id, "title": s.title, "turns": s.turn_count} for s in summaries]

    def _parse(self, options: Mapping[str, Any] | None) -> GenerationOptions:
        return parse_options(
            options, default_model=self._default_model, default_openai_model=self._default_openai_model
        )

    async def _actor(self, key: str, request: gr.Request | None = None) -> Actor:
        """Who is calling: a share token is only ever a token; any other well-formed key is an owner key."""
        if not isinstance(key, str) or not OWNER_ID.fullmatch(key):
            raise AccessError(BAD_KEY)
        address = self._address(request)
        if await asyncio.to_thread(self._gate.is_share_token, key):
            return Actor(owner_id=None, share_token=key, visitor=address)
        return Actor(owner_id=key, visitor=address)

    def _address(self, request: gr.Request | None) -> str:
        return client_address(request, self._proxies)


def _working_model(options: GenerationOptions) -> str:
    return (options.openai.model or "OpenAI") if options.route is Route.OPENAI else options.model


def _refuse(endpoint: str, exc: RetouchError) -> NoReturn:
    """An expected refusal: one log line (no traceback, no key), and the reason for the caller."""
    log.info("api %s refused: %s", endpoint, type(exc).__name__)
    raise gr.Error(exc.user_message(), print_exception=False) from exc


def _turn_index(conversation: Conversation, version: object) -> int:
    """The turn a version label ("v3b") or a turn index ("4", 4) names; InputError if none."""
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    text = str(version).strip() if isinstance(version, str) else ""
    if text.isdigit() and len(text) < 6:
        return int(text)
    for index, label in labels(conversation).items():
        if label == text:
            return index
    raise InputError("Name a version as the transcript does (e.g. \u201cv3b\u201d), or a turn index.")


async def _transcripts(
    steps: AsyncIterator[Step], working_model: str, extra: Mapping[str, Any] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The transcript at each step of a turn: while it runs with "progress" (chat/ui/progress.py);
    the last exactly as ``/conversation`` would return it (plus ``extra``)."""
    final, first = None, True
    async for step in steps:
        transcript = {**to_transcript(step.conversation), **(extra or {})}
        if step.since is None and not first:  # the answer: neither the message stored nor progress
            final = transcript
            continue
        first = False
        elapsed = time.monotonic() - step.since if step.since is not None else 0.0
        yield {
            **transcript,
            "progress": turn_progress_json(step.progress, working_model=working_model, elapsed_s=elapsed),
        }
    if final is None:
        raise InputError("Nothing happened: the conversation could not be updated.")
    yield final


def streamed(
    endpoint: Callable[..., AsyncIterator[dict[str, Any]]],
) -> Callable[..., AsyncIterator[dict[str, Any]]]:
    """``endpoint`` with the return annotation of its items, for Gradio's API schema (``gr.api``
    reads the annotation as the output's type: an iterator is no JSON type)."""
    signature = inspect.signature(endpoint).replace(return_annotation=dict[str, Any])

    @functools.wraps(endpoint)
    async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async for item in endpoint(*args, **kwargs):
            yield item

    stream.__signature__ = signature  # type: ignore[attr-defined]
    return stream
