"""Thin async handlers: Gradio payload -> service / library -> the page rendered from storage.

Every handler rebuilds who is asking (the browser's owner id plus any share token) and lets
the service decide what they may do, so hiding a button is never the only protection.
Errors a user can act on become chat messages or a status line; nothing here decides policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from pydantic import SecretStr

from chat.access import Access, Actor
from chat.config import DEFAULTS
from chat.domain import Conversation, GenerationOptions, Role, Route
from chat.errors import RetouchError
from chat.images import painted_region, region_png
from chat.library import ConversationLibrary
from chat.options import parse_options
from chat.service import ChatService
from chat.ui.files import FileMaker
from chat.ui.layout import OPTION_NAMES, Layout, model_choices
from chat.ui.render import chat_label, to_messages, versions
from chat.ui.uploads import read_uploads
from chat.visitors import TrustedProxies

__all__ = ["Handlers", "UIConfig", "client_address", "log_refusal"]

log = logging.getLogger("retouch.ui")

NO_KEYS = (
    "To start, paste your Gemini API key (free at https://aistudio.google.com/apikey) under "
    "\u201cYour API keys\u201d, or run Retouch with `GEMINI_API_KEY=…`."
)
OPENAI_ONLY = "Gemini has no key (`GEMINI_API_KEY`), so every edit goes to OpenAI."
READ_ONLY = "**Read-only view shared with you.** Duplicate it to make your own copy and keep editing."
CONTINUE = "**Shared conversation:** you can continue it; your messages appear for everyone with the link."


@dataclass(frozen=True)
class UIConfig:
    default_model: str
    default_openai_model: str
    browser_secret: str  # from the environment or a private file (app.py), never a constant
    files_dir: Path  # private (0700): staged images and downloads (chat/ui/files.py)
    configured: Mapping[str, bool] = field(default_factory=lambda: {"gemini": True, "openai": False})
    max_upload_bytes: int = DEFAULTS.max_upload_bytes
    model_concurrency: int = DEFAULTS.model_concurrency
    proxies: TrustedProxies = field(default_factory=TrustedProxies)

    def key_status(self) -> str:
        if not any(self.configured.values()):
            return NO_KEYS
        return "" if self.configured.get("gemini") else OPENAI_ONLY


class Handlers:
    def __init__(
        self,
        service: ChatService,
        library: ConversationLibrary,
        config: UIConfig,
        ui: Layout,
        files: FileMaker,
    ) -> None:
        self._service = service
        self._library = library
        self._config = config
        self._ui = ui
        self._files = files

    # --- what every view update touches --------------------------------------------------------

    @property
    def view_outputs(self) -> list[Any]:
        ui, lib = self._ui, self._ui.library
        return [
            ui.chatbot,
            ui.summary,
            ui.conversation_id,
            ui.share_token,
            ui.status,
            ui.painter,
            ui.box,
            ui.painter_box,
            lib.owner_tools,
            lib.banner,
            lib.duplicate,
            lib.title,
            lib.links,
            lib.revoke_choice,
            lib.gallery,
            lib.ids,
            ui.versions.choice,
            ui.versions.slider,
            ui.owner,
        ]

    async def view(
        self,
        actor: Actor,
        conversation: Conversation | None,
        access: Access | None,
        *,
        status: str = "",
        request: gr.Request | None = None,
        working_model: str | None = None,
    ) -> dict[Any, Any]:
        """The whole page for one conversation (or none) as ``actor`` may see it."""
        ui, lib = self._ui, self._ui.library
        owner = access is Access.OWNER or conversation is None
        writable = access is None or access.can_write()
        image = conversation.latest_image() if conversation else None
        unanswered = bool(conversation and conversation.turns and conversation.turns[-1].role is Role.USER)
        if working_model is None and conversation and unanswered and self._service.busy(conversation.id):
            working_model = "the chosen model"  # another tab's or a teammate's turn is running right now
        choices = [(label, seq) for label, seq in versions(conversation)] if conversation else []
        links, revoke = await self._links(actor, conversation, access, request)
        gallery, ids = await self._gallery(actor)
        return {
            ui.chatbot: to_messages(conversation, self._files.image, working_model=working_model),
            ui.summary: chat_label(conversation),
            ui.conversation_id: conversation.id if conversation else "",
            ui.share_token: actor.share_token if conversation and access is not Access.OWNER else "",
            ui.status: status,
            ui.painter: gr.ImageEditor(value=self._files.image(image) if image else None),
            ui.box: gr.MultimodalTextbox(visible=writable),
            ui.painter_box: gr.Accordion(visible=writable),
            lib.owner_tools: gr.Group(visible=bool(conversation) and owner),
            lib.banner: gr.Markdown(_banner(access), visible=access in (Access.VIEW, Access.CONTINUE)),
            lib.duplicate: gr.Button(visible=access in (Access.VIEW, Access.CONTINUE)),
            lib.title: conversation.title if conversation else "",
            lib.links: links,
            lib.revoke_choice: gr.Dropdown(choices=revoke, value=None),
            lib.gallery: gallery,
            lib.ids: ids,
            ui.versions.choice: gr.Dropdown(choices=choices, value=choices[-1][1] if choices else None),
            ui.versions.slider: self._files.compare(conversation, choices[-1][1]) if choices else None,
            ui.owner: actor.owner_id,
        }

    async def _links(
        self,
        actor: Actor,
        conversation: Conversation | None,
        access: Access | None,
        request: gr.Request | None,
    ) -> tuple[str, list[tuple[str, str]]]:
        if conversation is None or access is not Access.OWNER:
            return "", []
        links = await self._library.links(actor, conversation.id)
        if not links:
            return "No share links yet.", []
        base = _base_url(request)
        lines = [f"- {link.kind}: `{base}?s={link.token}`" for link in links]
        choices = [(f"{link.kind} \u2026{link.token[-6:]}", link.token) for link in links]
        return "\n".join(lines), choices

    async def _gallery(self, actor: Actor) -> tuple[list[tuple[str, str]], list[str]]:
        summaries = await self._library.list(actor)
        items = [(self._files.thumbnail(s.thumbnail), s.title) for s in summaries]
        return items, [s.id for s in summaries]

    # --- page ----------------------------------------------------------------------------

    async def on_load(self, owner_id: str, request: gr.Request) -> dict[Any, Any]:
        """Open what the URL names: ?c=<id> (your own) or ?s=<token> (shared with you)."""
        token = (request.query_params.get("s") or "").strip() or None
        conversation_id = (request.query_params.get("c") or "").strip()
        actor = Actor(owner_id, token)
        status = self._config.key_status()
        conversation, access = None, None
        try:
            if token:
                conversation_id = (await asyncio.to_thread(self._service.gate.shared, token)).conversation_id
            if conversation_id:
                grant, conversation = await self._service.open(actor, conversation_id)
                access = grant.access
        except RetouchError as exc:
            log_refusal("load", exc)
            status = exc.user_message()
            actor = Actor(owner_id)
        return await self.view(actor, conversation, access, status=status, request=request)

    async def on_new(self, owner: str) -> dict[Any, Any]:
        view = await self.view(Actor(owner), None, None, status=self._config.key_status())
        return {**view, self._ui.box: gr.MultimodalTextbox(value=None, visible=True)}

    async def on_open(
        self, owner: str, ids: list[str], evt: gr.SelectData, request: gr.Request
    ) -> dict[Any, Any]:
        """A click in "My conversations"."""
        actor = Actor(owner)
        try:
            grant, conversation = await self._service.open(actor, ids[evt.index])
        except (RetouchError, IndexError, TypeError) as exc:
            message = exc.user_message() if isinstance(exc, RetouchError) else "That conversation is gone."
            return await self.view(actor, None, None, status=message, request=request)
        return await self.view(actor, conversation, grant.access, request=request)

    def on_model_change(self, model_id: str) -> tuple[Any, Any]:
        ratios, sizes = model_choices(model_id)
        return gr.Dropdown(choices=ratios, value="auto"), gr.Dropdown(choices=sizes, value="auto")

    # --- turns ---------------------------------------------------------------------------

    async def on_submit(
        self,
        request: gr.Request,
        message: dict | None,
        conversation_id: str,
        share_token: str,
        owner: str,
        painter: dict | None,
        gemini_key: str,
        openai_key: str,
        *option_values: Any,
    ) -> AsyncIterator[dict[Any, Any]]:
        """Yields the page twice: with the message stored (and a "working" bubble), then answered."""
        actor = Actor(owner, share_token or None, client_address(request, self._config.proxies))
        keys = visitor_keys(gemini_key, openai_key)
        message = message or {}
        try:
            options = self._options(option_values)
            attachments = await asyncio.to_thread(
                read_uploads, message.get("files") or [], max_bytes=self._config.max_upload_bytes
            )
            painted = await asyncio.to_thread(_painted, painter)
            steps = self._service.send(
                actor,
                conversation_id or None,
                message.get("text") or "",
                attachments,
                options=options,
                painted=painted,
                keys=keys,
            )
            async for index, conversation in _numbered(steps):
                access = (await asyncio.to_thread(self._service.gate.grant, actor, conversation.id)).access
                working = _working_model(options) if index == 0 else None
                view = await self.view(actor, conversation, access, working_model=working, request=request)
                yield {**view, self._ui.box: gr.MultimodalTextbox(value=None, visible=True)}
        except RetouchError as exc:
            yield await self._refusal(actor, conversation_id, exc)

    async def on_retry(
        self,
        request: gr.Request,
        conversation_id: str,
        share_token: str,
        owner: str,
        gemini_key: str,
        openai_key: str,
        *option_values: Any,
    ) -> AsyncIterator[dict[Any, Any]]:
        actor = Actor(owner, share_token or None, client_address(request, self._config.proxies))
        try:
            options = self._options(option_values)
            keys = visitor_keys(gemini_key, openai_key)
            steps = self._service.retry(actor, conversation_id, options=options, keys=keys)
            async for index, conversation in _numbered(steps):
                access = (await asyncio.to_thread(self._service.gate.grant, actor, conversation.id)).access
                working = _working_model(options) if index == 0 else None
                yield await self.view(actor, conversation, access, working_model=working, request=request)
        except RetouchError as exc:
            yield await self._refusal(actor, conversation_id, exc)

    async def _refusal(self, actor: Actor, conversation_id: str, exc: RetouchError) -> dict[Any, Any]:
        """Show why, for this moment only: nothing of a refused message is stored; the box keeps it."""
        log_refusal("turn", exc)
        conversation, access = None, None
        if conversation_id:
            try:
                grant, conversation = await self._service.open(actor, conversation_id)
                access = grant.access
            except RetouchError:
                actor = Actor(actor.owner_id)
        view = await self.view(actor, conversation, access)
        notice = {"role": "assistant", "content": f"\u26a0\ufe0f {exc.user_message()}"}
        return {
            **view,
            self._ui.chatbot: [*view[self._ui.chatbot], notice],
            self._ui.box: gr.MultimodalTextbox(),
        }

    # --- helpers -------------------------------------------------------------------------

    def _options(self, values: Sequence[Any]) -> GenerationOptions:
        return parse_options(
            dict(zip(OPTION_NAMES, values, strict=True)),
            default_model=self._config.default_model,
            default_openai_model=self._config.default_openai_model,
        )


def visitor_keys(gemini_key: str | None, openai_key: str | None) -> dict[str, SecretStr]:
    """A visitor's own keys, for their calls only: never stored, logged or shown again."""
    keys = {"gemini": (gemini_key or "").strip(), "openai": (openai_key or "").strip()}
    return {name: SecretStr(key) for name, key in keys.items() if key}


def client_address(request: gr.Request | None, proxies: TrustedProxies) -> str:
    """Who to count for rate limits: the direct peer, or what a trusted proxy says it forwarded."""
    if request is None:
        return ""
    client = getattr(request, "client", None)
    peer = getattr(client, "host", "") or ""
    return proxies.client_address(peer, request.headers.get("x-forwarded-for"))


def log_refusal(event: str, exc: RetouchError) -> None:
    """An expected refusal is one line for operators: which event, which kind; no traceback, no text."""
    log.info("%s refused: %s", event, type(exc).__name__)


def _banner(access: Access | None) -> str:
    return {Access.VIEW: READ_ONLY, Access.CONTINUE: CONTINUE}.get(access, "") if access else ""


def _base_url(request: gr.Request | None) -> str:
    if request is None:
        return "/"
    headers = request.headers
    host = headers.get("x-forwarded-host") or headers.get("host") or f"{DEFAULTS.host}:{DEFAULTS.port}"
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{host}/"


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
