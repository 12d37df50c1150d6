"""Thin async handlers: Gradio payload -> ChatService -> rendered conversation.

Errors a user can act on become chat messages; nothing here decides policy.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from chat.domain import Conversation, GenerationOptions
from chat.errors import InputError
from chat.images import describe_size
from chat.options import parse_options
from chat.service import Attachment, ChatService
from chat.ui.layout import OPTION_NAMES, model_choices
from chat.ui.render import to_messages, to_transcript

__all__ = ["Handlers"]

NO_KEY = (
    "No Gemini API key is set: start Retouch with `GEMINI_API_KEY=…` "
    "(get one at https://aistudio.google.com/apikey) to edit images."
)
NOT_FOUND = "That conversation does not exist (or was deleted), so a new one starts here."

UIResult = tuple[Any, ...]


def upload_root() -> Path:
    """Where Gradio puts uploads; files are only ever read from there (never a caller-chosen path)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


class Handlers:
    def __init__(
        self, service: ChatService, *, default_model: str, key_configured: bool, max_upload_bytes: int
    ) -> None:
        self._service = service
        self._max_upload_bytes = max_upload_bytes
        self._default_model = default_model
        self._key_configured = key_configured

    # --- page ----------------------------------------------------------------------------

    async def on_load(self, request: gr.Request) -> UIResult:
        """Reopen the conversation named in the URL (?c=<id>)."""
        status = "" if self._key_configured else NO_KEY
        conversation_id = (request.query_params.get("c") or "").strip()
        if not conversation_id:
            return [], "", status
        conversation = await self._service.load(conversation_id)
        if conversation is None:
            return [], "", NOT_FOUND
        return self._render(conversation), conversation.id, status

    def on_new(self) -> UIResult:
        return [], "", gr.MultimodalTextbox(value=None), ""

    def on_model_change(self, model_id: str) -> UIResult:
        ratios, sizes = model_choices(model_id)
        return gr.Dropdown(choices=ratios, value="auto"), gr.Dropdown(choices=sizes, value="auto")

    # --- turns ---------------------------------------------------------------------------

    async def on_submit(
        self, message: dict | None, conversation_id: str, *option_values: Any
    ) -> AsyncIterator[UIResult]:
        """Yields (chat, conversation id, textbox, status): once stored, once answered."""
        current = await self._current(conversation_id)
        try:
            options = self._options(option_values)
            attachments = await asyncio.to_thread(
                read_uploads, (message or {}).get("files") or [], max_bytes=self._max_upload_bytes
            )
            turns = self._service.send(
                conversation_id or None, (message or {}).get("text") or "", attachments, options=options
            )
            step = 0
            async for conversation in turns:
                working = options.model if step == 0 else None  # the first step is "stored, now calling"
                step += 1
                yield (
                    self._render(conversation, working),
                    conversation.id,
                    gr.MultimodalTextbox(value=None),
                    "",
                )
        except InputError as exc:
            yield self._notice(current, exc.user_message()), conversation_id, gr.MultimodalTextbox(), ""

    async def on_retry(self, conversation_id: str, *option_values: Any) -> AsyncIterator[UIResult]:
        current = await self._current(conversation_id)
        try:
            options = self._options(option_values)
            step = 0
            async for conversation in self._service.retry(conversation_id, options=options):
                working = options.model if step == 0 else None
                step += 1
                yield self._render(conversation, working), ""
        except InputError as exc:
            yield self._notice(current, exc.user_message()), ""

    # --- API (gradio_client) -------------------------------------------------------------

    async def api_send(
        self,
        conversation_id: str,
        text: str,
        images: list[gr.FileData] | None = None,
        options: dict | None = None,
    ) -> dict:
        """Send a message (text and optional images) to a conversation ("" starts a new one); returns the transcript."""
        try:
            parsed = parse_options(options, default_model=self._default_model)
            paths = [_file_path(f) for f in images or []]
            attachments = await asyncio.to_thread(read_uploads, paths, max_bytes=self._max_upload_bytes)
            final = await _last(
                self._service.send(conversation_id or None, text, attachments, options=parsed)
            )
        except InputError as exc:
            raise gr.Error(exc.user_message()) from exc
        return to_transcript(final)

    async def api_retry(self, conversation_id: str, options: dict | None = None) -> dict:
        """Answer the last user message again (after a failure); returns the transcript."""
        try:
            parsed = parse_options(options, default_model=self._default_model)
            final = await _last(self._service.retry(conversation_id, options=parsed))
        except InputError as exc:
            raise gr.Error(exc.user_message()) from exc
        return to_transcript(final)

    async def api_conversation(self, conversation_id: str) -> dict:
        """The stored transcript of a conversation."""
        conversation = await self._service.load(conversation_id)
        if conversation is None:
            raise gr.Error("No conversation with that id.")
        return to_transcript(conversation)

    async def api_image(self, conversation_id: str, sha256: str) -> gr.FileData:
        """Download one image of a conversation (PNG/JPEG master, as stored)."""
        conversation = await self._service.load(conversation_id)
        parts = [
            p for t in (conversation.turns if conversation else ()) for p in t.images() if p.sha256 == sha256
        ]
        if not parts:
            raise gr.Error("No such image in that conversation.")
        return gr.FileData(path=str(self._service.image_path(parts[0])), mime_type=parts[0].mime_type)

    # --- helpers -------------------------------------------------------------------------

    def _options(self, values: Sequence[Any]) -> GenerationOptions:
        return parse_options(dict(zip(OPTION_NAMES, values, strict=True)), default_model=self._default_model)

    async def _current(self, conversation_id: str) -> Conversation | None:
        return await self._service.load(conversation_id) if conversation_id else None

    def _render(self, conversation: Conversation | None, working_model: str | None = None) -> list[dict]:
        return to_messages(conversation, self._service.image_path, working_model=working_model)

    def _notice(self, conversation: Conversation | None, text: str) -> list[dict]:
        """Show a message for this moment only: nothing of a refused message is stored."""
        return [*self._render(conversation), {"role": "assistant", "content": f"\u26a0\ufe0f {text}"}]


async def _last(steps: AsyncIterator[Conversation]) -> Conversation:
    """API callers want the finished turn, not the intermediate "stored" step."""
    result = None
    async for step in steps:
        result = step
    if result is None:
        raise InputError("Nothing happened: the conversation could not be updated.")
    return result


def _file_path(value: Any) -> str:
    return value.get("path", "") if isinstance(value, dict) else str(getattr(value, "path", value))


def read_uploads(paths: Sequence[Any], *, max_bytes: int) -> list[Attachment]:
    """Read uploaded files, refusing anything outside Gradio's upload folder or over the size limit."""
    root = upload_root()
    attachments = []
    for raw in paths:
        path = Path(_file_path(raw)).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise InputError("That upload could not be found; please attach the image again.")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                f"\u201c{path.name}\u201d is {describe_size(size)}; the limit is {describe_size(max_bytes)}. "
                "Please upload a smaller file."
            )
        attachments.append(Attachment(name=path.name, data=path.read_bytes()))
    return attachments
