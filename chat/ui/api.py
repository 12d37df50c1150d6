"""The documented API (gradio_client): thin wrappers over the service and the library.

Every endpoint takes ``key``: your owner key (returned by the first ``/send`` that
creates a conversation, or any secret of your own of 16+ characters) or a share token.
Rights are checked by the same Gatekeeper as the UI, so a read-only token can never write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import gradio as gr

from chat.access import Actor, new_owner_id
from chat.domain import Conversation, GenerationOptions
from chat.errors import InputError, RetouchError
from chat.images import painted_from_mask
from chat.library import ConversationLibrary
from chat.options import parse_options
from chat.service import ChatService
from chat.ui.events import visitor_keys
from chat.ui.render import to_transcript
from chat.ui.uploads import file_path, read_uploads

__all__ = ["ApiHandlers", "MIN_KEY_LENGTH"]

MIN_KEY_LENGTH = 16


class ApiHandlers:
    def __init__(
        self,
        service: ChatService,
        library: ConversationLibrary,
        *,
        default_model: str,
        default_openai_model: str,
        max_upload_bytes: int,
    ) -> None:
        self._service = service
        self._library = library
        self._default_model = default_model
        self._default_openai_model = default_openai_model
        self._max_upload_bytes = max_upload_bytes

    async def send(
        self,
        conversation_id: str,
        text: str,
        images: list[gr.FileData] | None = None,
        options: dict | None = None,
        mask: gr.FileData | None = None,
        key: str = "",
        gemini_key: str = "",
        openai_key: str = "",
    ) -> dict:
        """Send a message ("" as conversation_id starts a new one); returns the transcript.

        images: photos to attach. mask: a PNG the size of the current image whose transparent
        pixels mark where the edit goes. key: your owner key or a "continue" share token; a new
        conversation without a key gets a fresh owner key, returned as "owner_key".
        gemini_key / openai_key: your own provider keys, for this call only (never stored).
        """
        new_key = "" if key or conversation_id else new_owner_id()
        actor = _actor(key or new_key)
        try:
            parsed = self._parse(options)
            paths = [file_path(f) for f in images or []]
            attachments = await asyncio.to_thread(read_uploads, paths, max_bytes=self._max_upload_bytes)
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
            final = await _last(steps)
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc
        transcript = to_transcript(final)
        if new_key:
            transcript["owner_key"] = new_key
        return transcript

    async def retry(
        self,
        conversation_id: str,
        options: dict | None = None,
        key: str = "",
        gemini_key: str = "",
        openai_key: str = "",
    ) -> dict:
        """Answer the last message again (after a failure, or for another variant); returns the transcript."""
        try:
            keys = visitor_keys(gemini_key, openai_key)
            steps = self._service.retry(_actor(key), conversation_id, options=self._parse(options), keys=keys)
            final = await _last(steps)
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc
        return to_transcript(final)

    async def conversation(self, conversation_id: str, key: str = "") -> dict:
        """The stored transcript of a conversation."""
        try:
            return to_transcript(await self._service.load(_actor(key), conversation_id))
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc

    async def image(self, conversation_id: str, sha256: str, key: str = "") -> gr.FileData:
        """Download one image of a conversation (the stored master, as received)."""
        try:
            conversation = await self._service.load(_actor(key), conversation_id)
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc
        parts = [p for t in conversation.turns for p in t.images() if p.sha256 == sha256]
        if not parts:
            raise gr.Error("No such image in that conversation.")
        return gr.FileData(path=str(self._service.image_path(parts[0])), mime_type=parts[0].mime_type)

    async def share(self, conversation_id: str, kind: str = "view", key: str = "") -> str:
        """Create a share link token: kind "view" (read-only) or "continue". Owner only."""
        try:
            return (await self._library.share(_actor(key), conversation_id, kind)).token
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc

    async def revoke(self, conversation_id: str, token: str, key: str = "") -> bool:
        """Revoke a share link. Owner only."""
        try:
            return await self._library.revoke(_actor(key), conversation_id, token)
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc

    async def fork(self, conversation_id: str, through_turn: int = -1, key: str = "") -> dict:
        """Copy a conversation (up to turn index ``through_turn``, or all with -1) into one of your own."""
        try:
            through = None if through_turn < 0 else through_turn
            copy = await self._library.fork(_actor(key), conversation_id, through_seq=through)
        except RetouchError as exc:
            raise gr.Error(exc.user_message()) from exc
        return to_transcript(copy)

    async def conversations(self, key: str, query: str = "") -> list[dict]:
        """Your conversations, newest first."""
        summaries = await self._library.list(_actor(key), query)
        return [{"conversation_id": s.id, "title": s.title, "turns": s.turn_count} for s in summaries]

    def _parse(self, options: Mapping[str, Any] | None) -> GenerationOptions:
        return parse_options(
            options, default_model=self._default_model, default_openai_model=self._default_openai_model
        )


def _actor(key: str) -> Actor:
    """The key is tried as the owner id and as a share token; short keys are refused outright."""
    if len(key) < MIN_KEY_LENGTH:
        raise gr.Error(f"Pass your owner key or a share token as key (at least {MIN_KEY_LENGTH} characters).")
    return Actor(owner_id=key, share_token=key)


async def _last(steps: AsyncIterator[Conversation]) -> Conversation:
    """API callers want the finished turn, not the intermediate "stored" step."""
    result = None
    async for step in steps:
        result = step
    if result is None:
        raise InputError("Nothing happened: the conversation could not be updated.")
    return result
