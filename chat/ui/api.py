"""The documented API (gradio_client): thin wrappers over the service and the library.

Every endpoint takes ``key``: your owner key (returned by the first ``/send`` that
creates a conversation, or any secret of your own: 16-100 letters, digits, ``-`` or ``_``)
or a share token. Rights are checked by the same Gatekeeper as the UI, so a read-only token
can never write, and a share token never owns anything: forking through one takes your own
key as ``owner_key``. Refusals are one log line and a ``gr.Error`` with the reason.

The same endpoints are the MCP server's tools (``launch(mcp_server=True)``, /gradio_api/mcp/):
Gradio turns each docstring's first paragraph and its ``Args:`` lines (one line per argument,
as Gradio parses them) into the tool's description. Nothing lives in ``gr.State`` (an MCP call
gets a fresh one), so every tool names its conversation and key. Provider keys may also come as
the request headers ``X-Gemini-Api-Key`` / ``X-OpenAI-Api-Key`` (``gr.Header``): an MCP client
configures them once, and like the arguments they are used for the call only, never stored.
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
        x_gemini_api_key: gr.Header | None = None,
        x_openai_api_key: gr.Header | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Start or continue an image edit: send a message (and photos) to a conversation; the answer is a new version of the image. Returns the conversation's transcript after the answer.

        Each turn builds on the whole conversation: start one with a photo and what to change ("make the sky stormy"), then keep sending edits ("now remove the car") with the conversation_id and key it returned. Without a photo, a new conversation asks for a new picture. The transcript lists every turn; an answer's image is named by "image_sha256" (fetch it with the image tool) and its "version" label ("v2"). Through gradio_client's submit, the transcript also comes at each step while the turn runs, with "progress".

        Args:
            conversation_id: The conversation to continue, or "" to start a new one.
            text: What to change, in plain words (e.g. "make the sky stormy").
            images: Photos to attach (PNG, JPEG or WebP), as https URLs or data: URIs (data:image/png;base64,...); usually only in the first message.
            options: Optional settings by name, e.g. {"model": "gemini-3-pro-image", "aspect_ratio": "16:9", "route": "auto"|"gemini"|"openai", "variants": 2, "budget_usd": 1.0}.
            mask: Optional PNG the size of the current image whose transparent pixels mark the only area to change.
            key: Your owner key (returned as "owner_key" when a new conversation starts without one) or a "continue" share token. "" only to start a new conversation.
            gemini_key: Your own Gemini API key for this call only (never stored); or send the X-Gemini-Api-Key header.
            openai_key: Your own OpenAI API key for this call only (never stored); or send the X-OpenAI-Api-Key header.
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
                keys=visitor_keys(gemini_key or x_gemini_api_key, openai_key or x_openai_api_key),
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
        x_gemini_api_key: gr.Header | None = None,
        x_openai_api_key: gr.Header | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer the last message of a conversation again (after a failure, or for another try). Returns the transcript, like send's.

        Args:
            conversation_id: The conversation whose last message to answer again.
            options: Optional settings by name, as for send.
            key: Your owner key or a "continue" share token of the conversation.
            gemini_key: Your own Gemini API key for this call only (never stored); or send the X-Gemini-Api-Key header.
            openai_key: Your own OpenAI API key for this call only (never stored); or send the X-OpenAI-Api-Key header.
        """
        try:
            actor = await self._actor(key, request)
            keys = visitor_keys(gemini_key or x_gemini_api_key, openai_key or x_openai_api_key)
            parsed = self._parse(options)
            steps = self._service.retry(actor, conversation_id, options=parsed, keys=keys)
            async for transcript in _transcripts(steps, _working_model(parsed)):
                yield transcript
        except RetouchError as exc:
            _refuse("retry", exc)

    async def stop(
        self, conversation_id: str, key: str = "", request: gr.Request | None = None
    ) -> dict[str, Any]:
        """Stop the answer being made for a conversation: its message stays, the turn is stored as stopped, and retry asks again. Returns the transcript.

        Args:
            conversation_id: The conversation whose running answer to stop.
            key: Your owner key or a "continue" share token (a read-only token is refused).
        """
        try:
            step = await self._service.stop(await self._actor(key, request), conversation_id)
        except RetouchError as exc:
            _refuse("stop", exc)
        return to_transcript(step.conversation)

    async def pick(self, conversation_id: str, version: str = "", key: str = "") -> dict[str, Any]:
        """Choose which variant the next edit builds on ("Use this"), among several answers to one message. Returns the transcript.

        Only an answer that succeeded can be picked; refused while a turn of the conversation runs, and for a read-only link.

        Args:
            conversation_id: The conversation.
            version: A version label from the transcript ("v3b"), or a turn index ("4").
            key: Your owner key or a "continue" share token.
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
        """Crop, rotate, flip or resize a version instantly, for free, without a model (Pillow on the server). Returns the transcript, whose last turn is the new version (provider "local", model what the edit did).

        Refused for a read-only link, and while an answer is being made. Undo: fork through the version before.

        Args:
            conversation_id: The conversation.
            version: A version label from the transcript ("v3"), a turn index ("4"), or "" for the image the next edit would use.
            edit: One of {"kind": "rotate", "degrees": 90|180|270} (clockwise); {"kind": "flip", "direction": "horizontal"|"vertical"}; {"kind": "crop", "left": 0, "top": 0, "right": 50, "bottom": 100, "unit": "px"|"percent"} (the box kept); {"kind": "resize", "width": 512, "height": null} (16-4096 px; a null side keeps the shape).
            key: Your owner key or a "continue" share token.
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
        """Read a conversation: its title and every turn (texts, image sha256s, version labels, status, cost). Returns the transcript.

        Args:
            conversation_id: The conversation to read.
            key: Your owner key or a share token of the conversation (read-only tokens may read).
        """
        try:
            return to_transcript(await self._service.load(await self._actor(key), conversation_id))
        except RetouchError as exc:
            _refuse("conversation", exc)

    async def image(self, conversation_id: str, sha256: str, key: str = "") -> gr.FileData:
        """Fetch one image of a conversation, exactly as stored (the bytes the provider or the uploader sent). Returns the image.

        Args:
            conversation_id: The conversation the image belongs to.
            sha256: The image's sha256, as the transcript names it ("image_sha256" of a turn, or an entry of its "images").
            key: Your owner key or a share token of the conversation.
        """
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
        """Share a conversation: create a link token that lets a teammate watch it ("view", read-only) or edit it too ("continue"). Returns the token; the link is the app's address with ?s=<token>. Owner only.

        Args:
            conversation_id: The conversation to share.
            kind: "view" (read-only) or "continue" (may send edits).
            key: Your owner key.
        """
        try:
            return (await self._library.share(await self._actor(key), conversation_id, kind)).token
        except RetouchError as exc:
            _refuse("share", exc)

    async def revoke(self, conversation_id: str, token: str, key: str = "") -> bool:
        """Revoke a share link at once: its holders can no longer read or edit. Returns whether a link was revoked. Owner only.

        Args:
            conversation_id: The conversation the link shares.
            token: The share token to revoke.
            key: Your owner key.
        """
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
        """Copy a conversation (all of it, or up to one turn: "edit from here") into a new one of your own. Returns the copy's transcript.

        Args:
            conversation_id: The conversation to copy.
            through_turn: The last turn index to keep, or -1 for all.
            key: Your owner key, or a share token of the conversation.
            owner_key: With a share token as key: your own owner key, which the copy belongs to (a copy never belongs to a link).
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
        """List your conversations, newest first, each with its id, title and number of turns.

        Args:
            key: Your owner key.
            query: Optional words to find in titles.
        """
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
