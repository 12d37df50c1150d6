"""Thin async handlers: Gradio payload -> ChatService -> rendered conversation.

Errors a user can act on become chat messages; nothing here decides policy.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from chat.domain import Conversation, GenerationOptions, Route
from chat.errors import InputError
from chat.images import describe_size, painted_from_mask, painted_region, region_png
from chat.options import parse_options
from chat.service import Attachment, ChatService
from chat.ui.layout import OPTION_NAMES, model_choices
from chat.ui.render import to_messages, to_transcript

__all__ = ["Handlers", "UIConfig"]

NO_KEYS = (
    "No API key is set: start Retouch with `GEMINI_API_KEY=…` (from https://aistudio.google.com/apikey) "
    "and, for the fallback, `OPENAI_API_KEY=…`."
)
OPENAI_ONLY = "Gemini has no key (`GEMINI_API_KEY`), so every edit goes to OpenAI."
NOT_FOUND = "That conversation does not exist (or was deleted), so a new one starts here."

UIResult = tuple[Any, ...]


@dataclass(frozen=True)
class UIConfig:
    default_model: str
    default_openai_model: str
    configured: Mapping[str, bool] = field(default_factory=lambda: {"gemini": True, "openai": False})
    max_upload_bytes: int = 20 * 1024 * 1024
    model_concurrency: int = 16

    def key_status(self) -> str:
        if not any(self.configured.values()):
            return NO_KEYS
        return "" if self.configured.get("gemini") else OPENAI_ONLY


def upload_root() -> Path:
    """Where Gradio puts uploads; files are only ever read from there (never a caller-chosen path)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


class Handlers:
    def __init__(self, service: ChatService, config: UIConfig) -> None:
        self._service = service
        self._config = config

    # --- page ----------------------------------------------------------------------------

    async def on_load(self, request: gr.Request) -> UIResult:
        """Reopen the conversation named in the URL (?c=<id>)."""
        status = self._config.key_status()
        conversation_id = (request.query_params.get("c") or "").strip()
        if not conversation_id:
            return [], "", status, None
        conversation = await self._service.load(conversation_id)
        if conversation is None:
            return [], "", NOT_FOUND, None
        return self._render(conversation), conversation.id, status, self._painter(conversation)

    def on_new(self) -> UIResult:
        return [], "", gr.MultimodalTextbox(value=None), self._config.key_status(), None

    def on_model_change(self, model_id: str) -> UIResult:
        ratios, sizes = model_choices(model_id)
        return gr.Dropdown(choices=ratios, value="auto"), gr.Dropdown(choices=sizes, value="auto")

    # --- turns ---------------------------------------------------------------------------

    async def on_submit(
        self, message: dict | None, conversation_id: str, painter: dict | None, *option_values: Any
    ) -> AsyncIterator[UIResult]:
        """Yields (chat, conversation id, textbox, status, painter): once stored, once answered."""
        current = await self._current(conversation_id)
        message = message or {}
        try:
            options = self._options(option_values)
            attachments = await asyncio.to_thread(
                read_uploads, message.get("files") or [], max_bytes=self._config.max_upload_bytes
            )
            painted = await asyncio.to_thread(_painted, painter)
            steps = self._service.send(
                conversation_id or None,
                message.get("text") or "",
                attachments,
                options=options,
                painted=painted,
            )
            async for index, conversation in _numbered(steps):
                working = _working_model(options) if index == 0 else None
                box = gr.MultimodalTextbox(value=None)
                yield (
                    self._render(conversation, working),
                    conversation.id,
                    box,
                    "",
                    self._painter(conversation),
                )
        except InputError as exc:
            notice = self._notice(current, exc.user_message())
            yield notice, conversation_id, gr.MultimodalTextbox(), "", gr.ImageEditor()

    async def on_retry(self, conversation_id: str, *option_values: Any) -> AsyncIterator[UIResult]:
        current = await self._current(conversation_id)
        try:
            options = self._options(option_values)
            async for index, conversation in _numbered(self._service.retry(conversation_id, options=options)):
                working = _working_model(options) if index == 0 else None
                yield self._render(conversation, working), "", self._painter(conversation)
        except InputError as exc:
            yield self._notice(current, exc.user_message()), "", gr.ImageEditor()

    # --- API (gradio_client) -------------------------------------------------------------

    async def api_send(
        self,
        conversation_id: str,
        text: str,
        images: list[gr.FileData] | None = None,
        options: dict | None = None,
        mask: gr.FileData | None = None,
    ) -> dict:
        """Send a message to a conversation ("" starts a new one); returns the transcript.

        images: photos to attach. mask: a PNG the size of the current image whose transparent
        pixels mark where the edit goes (OpenAI's convention).
        """
        try:
            parsed = self._parse(options)
            paths = [_file_path(f) for f in images or []]
            attachments = await asyncio.to_thread(
                read_uploads, paths, max_bytes=self._config.max_upload_bytes
            )
            painted = None
            if mask is not None:
                [mask_file] = await asyncio.to_thread(
                    read_uploads, [_file_path(mask)], max_bytes=self._config.max_upload_bytes
                )
                painted = await asyncio.to_thread(painted_from_mask, mask_file.data)
            steps = self._service.send(
                conversation_id or None, text, attachments, options=parsed, painted=painted
            )
            final = await _last(steps)
        except InputError as exc:
            raise gr.Error(exc.user_message()) from exc
        return to_transcript(final)

    async def api_retry(self, conversation_id: str, options: dict | None = None) -> dict:
        """Answer the last user message again (after a failure); returns the transcript."""
        try:
            final = await _last(self._service.retry(conversation_id, options=self._parse(options)))
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
        """Download one image of a conversation (the stored master, as received)."""
        conversation = await self._service.load(conversation_id)
        parts = [
            p for t in (conversation.turns if conversation else ()) for p in t.images() if p.sha256 == sha256
        ]
        if not parts:
            raise gr.Error("No such image in that conversation.")
        return gr.FileData(path=str(self._service.image_path(parts[0])), mime_type=parts[0].mime_type)

    # --- helpers -------------------------------------------------------------------------

    def _parse(self, options: Mapping[str, Any] | None) -> GenerationOptions:
        return parse_options(
            options,
            default_model=self._config.default_model,
            default_openai_model=self._config.default_openai_model,
        )

    def _options(self, values: Sequence[Any]) -> GenerationOptions:
        return self._parse(dict(zip(OPTION_NAMES, values, strict=True)))

    async def _current(self, conversation_id: str) -> Conversation | None:
        return await self._service.load(conversation_id) if conversation_id else None

    def _render(self, conversation: Conversation | None, working_model: str | None = None) -> list[dict]:
        return to_messages(conversation, self._service.image_path, working_model=working_model)

    def _painter(self, conversation: Conversation) -> Any:
        """The painter always shows the image the next edit starts from, with no strokes."""
        image = conversation.latest_image()
        return gr.ImageEditor(value=str(self._service.image_path(image)) if image else None)

    def _notice(self, conversation: Conversation | None, text: str) -> list[dict]:
        """Show a message for this moment only: nothing of a refused message is stored."""
        return [*self._render(conversation), {"role": "assistant", "content": f"\u26a0\ufe0f {text}"}]


def _working_model(options: GenerationOptions) -> str:
    return (options.openai.model or "OpenAI") if options.route is Route.OPENAI else options.model


def _painted(painter: dict | None) -> bytes | None:
    """The brush strokes of the painter as a white-on-black PNG, or None if nothing was painted."""
    if not painter or painter.get("background") is None:
        return None
    region = painted_region(list(painter.get("layers") or []), painter["background"].size)
    return region_png(region) if region is not None else None


async def _numbered(steps: AsyncIterator[Conversation]) -> AsyncIterator[tuple[int, Conversation]]:
    index = 0
    async for step in steps:
        yield index, step
        index += 1


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
