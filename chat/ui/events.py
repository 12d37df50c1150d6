"""Thin async handlers: Gradio payload -> service / library -> the parts of the page that changed.

Every handler rebuilds who is asking (the browser's owner id plus any share token) and lets
the service decide what they may do, so hiding a button is never the only protection. The page
is built from what the service returned (the conversation and the grant it checked, a ``Shown``),
never by asking again; an update carries only the parts an event changed (``Show``).
Errors a user can act on become chat messages or a status line; nothing here decides policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Flag, auto
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.blocks import Block
from pydantic import SecretStr

from chat.config import DEFAULTS
from chat.conversation.options import parse_options
from chat.conversation.service import ChatService, Stamp, Step
from chat.domain import Conversation, GenerationOptions, Role, Route, ShareLink
from chat.errors import RetouchError
from chat.limits.visitors import TrustedProxies
from chat.media.images import painted_region, region_png
from chat.sharing.access import Access, Actor, Grant, is_account
from chat.sharing.library import ConversationLibrary
from chat.ui.files import FileMaker
from chat.ui.layout import Layout, model_choices
from chat.ui.owner import page_owner
from chat.ui.progress import turn_progress_messages
from chat.ui.render import chat_label, to_messages, undo_target, versions
from chat.ui.uploads import read_uploads
from chat.ui.variants import estimate, panel_update

__all__ = ["Handlers", "PageUpdate", "Show", "Shown", "UIConfig", "client_address", "log_refusal"]

log = logging.getLogger("retouch.ui")

#: What a handler returns: the parts of the page it changed, each with its new value or a
#: component carrying new properties (Gradio applies it to the outputs it names).
PageUpdate = dict[Block, Any]
#: ``gr.skip()`` returned alone: nothing on the page changes.
SkipAll = dict[str, Any]

NO_KEYS = (
    "To start, paste your Gemini API key (free at https://aistudio.google.com/apikey) under "
    "\u201cYour API keys\u201d, or run Retouch with `GEMINI_API_KEY=…`."
)
OPENAI_ONLY = "Gemini has no key (`GEMINI_API_KEY`), so every edit goes to OpenAI."
READ_ONLY = "**Read-only view shared with you.** Duplicate it to make your own copy and keep editing."
CONTINUE = "**Shared conversation:** you can continue it; your messages appear for everyone with the link."
NOT_TAKEN = (
    "Retouch could not take this message: it is very busy right now. "
    "Your message is still in the box: send it again in a minute."
)


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
    sign_in: bool = False  # Hugging Face sign-in (on a Space with hf_oauth: Settings.sign_in)

    def key_status(self) -> str:
        if not any(self.configured.values()):
            return NO_KEYS
        return "" if self.configured.get("gemini") else OPENAI_ONLY


STILL_THE_BROWSERS = (
    "You are signed in: the conversation you had open is still this browser\u2019s. "
    "Add this browser\u2019s conversations to your account to go on with it here."
)


class Show(Flag):
    """The parts of the page an event changed: an update carries only these (plus the status line
    and the owner id), so a step that changed the chat does not rebuild the sidebar."""

    CHAT = auto()  # the messages, their caption, the open conversation's id, the painter's image
    ACCESS = auto()  # what the visitor may do: the box, the painter, quick edits, owner tools, banner, title
    LINKS = auto()  # the open conversation's share links (owners only: one read)
    GALLERY = auto()  # "My conversations" (one read)
    VERSIONS = auto()  # the version picker and its before/after
    ALL = CHAT | ACCESS | LINKS | GALLERY | VERSIONS


@dataclass(frozen=True)
class Shown:
    """What a page shows and to whom: the conversation and grant the service returned, as is."""

    actor: Actor
    conversation: Conversation | None = None
    grant: Grant | None = None
    answering: bool = False  # a turn of it is being answered right now, on any replica

    @classmethod
    def of(cls, actor: Actor, step: Step) -> Shown:
        return cls(actor, step.conversation, step.grant, step.answering)

    @property
    def access(self) -> Access | None:
        return self.grant.access if self.grant else None


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
    def view_outputs(self) -> list[Block]:
        ui, lib = self._ui, self._ui.library
        return [
            ui.chatbot,
            ui.summary,
            ui.conversation_id,
            ui.share_token,
            ui.status,
            ui.painter,
            ui.box,
            *ui.for_writers,
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
            ui.versions.quick.box,
            ui.versions.quick.undo,
            ui.owner,
            ui.variants.box,
            ui.variants.gallery,
            ui.variants.use,
            ui.timer,
        ]

    @property
    def watch_outputs(self) -> list[Block]:
        """What a watcher's render (``on_changed``) sets: the chat and versions parts of the view,
        and no more, as Gradio rebuilds the config of every output an event names but leaves out
        (~1 ms each, on every watcher's page at once: bench/RESULTS.md, live views)."""
        ui = self._ui
        return [
            ui.chatbot,
            ui.summary,
            ui.status,  # a refusal's reason only
            # Not the painter: a replica that set it for this page holds a copy of it without
            # ``_without_files_of_other_replicas`` (chat/ui/layout.py), and after a drain the next
            # message with the other replica's file in it would fail there (tests/test_fleet.py).
            ui.versions.choice,
            ui.versions.slider,
            ui.versions.quick.undo,
            ui.variants.box,
            ui.variants.gallery,
            ui.variants.use,
            ui.timer,
        ]

    async def view(
        self,
        shown: Shown,
        show: Show = Show.ALL,
        *,
        status: str = "",
        request: gr.Request | None = None,
        working_model: str | None = None,
        links: Sequence[ShareLink] | None = None,
    ) -> PageUpdate:
        """The parts of the page ``show`` names, for one conversation (or none) as ``shown.actor``
        may see it, from what the caller already holds: only links and the gallery are read.
        ``links`` are the open conversation's, if the caller knows them (a new one has none)."""
        update: PageUpdate = {self._ui.status: status}
        if not is_account(owner_id := shown.actor.owner_id):  # the browser keeps its own id signed in
            update[self._ui.owner] = owner_id
        if Show.CHAT in show or Show.VERSIONS in show:
            # Staging images may fetch them from object storage: one worker-thread hop for both parts.
            update |= await asyncio.to_thread(self._staged_parts, shown, show, working_model)
        if Show.ACCESS in show:
            update |= self._rights(shown)
        if Show.LINKS in show:
            update |= await self._links(shown, request, links)
        if Show.GALLERY in show:
            update |= await self.gallery(shown.actor)
        return update

    def _staged_parts(self, shown: Shown, show: Show, working_model: str | None) -> PageUpdate:
        """The parts of the page that show stored images: the chat and the versions."""
        update: PageUpdate = {}
        if Show.CHAT in show:
            update |= self._chat(shown, working_model)
        if Show.VERSIONS in show:
            update |= self._versions(shown.conversation)
        return update

    def _chat(self, shown: Shown, working_model: str | None) -> PageUpdate:
        ui, conversation = self._ui, shown.conversation
        image = conversation.latest_image() if conversation else None
        unanswered = bool(conversation and conversation.turns and conversation.turns[-1].role is Role.USER)
        if working_model is None and unanswered and shown.answering:
            working_model = WATCHED_MODEL  # another tab's or a teammate's turn is running right now
        return {
            ui.chatbot: to_messages(conversation, self._files.image, working_model=working_model),
            ui.summary: chat_label(conversation),
            ui.conversation_id: conversation.id if conversation else "",
            ui.share_token: shown.actor.share_token
            if conversation and shown.access is not Access.OWNER
            else "",
            ui.painter: gr.ImageEditor(value=self._files.image(image) if image else None),
            **panel_update(ui.variants, conversation, self._files.image),
            ui.timer: gr.Timer(active=conversation is not None),  # watched while open
        }

    def _rights(self, shown: Shown) -> PageUpdate:
        ui, lib, conversation, access = self._ui, self._ui.library, shown.conversation, shown.access
        owner = access is Access.OWNER or conversation is None
        writable = access is None or access.can_write()
        return {
            ui.box: gr.MultimodalTextbox(visible=writable, interactive=True),  # closed until the load
            **{panel: gr.update(visible=writable) for panel in ui.for_writers},
            ui.versions.quick.box: gr.Group(visible=writable),
            lib.owner_tools: gr.Group(visible=bool(conversation) and owner),
            lib.banner: gr.Markdown(_banner(access), visible=access in (Access.VIEW, Access.CONTINUE)),
            lib.duplicate: gr.Button(visible=access in (Access.VIEW, Access.CONTINUE)),
            lib.title: conversation.title if conversation else "",
        }

    def _versions(self, conversation: Conversation | None) -> PageUpdate:
        choices = [(label, seq) for label, seq in versions(conversation)] if conversation else []
        slider, undo = self._ui.versions.slider, undo_target(conversation)
        return {
            self._ui.versions.choice: gr.Dropdown(choices=choices, value=choices[-1][1] if choices else None),
            slider: self._files.compare(conversation, choices[-1][1]) if choices else None,
            self._ui.versions.quick.undo: gr.Button(
                f"Undo: edit from {undo[0]}" if undo else "Undo", visible=undo is not None
            ),
        }

    async def _links(
        self, shown: Shown, request: gr.Request | None, links: Sequence[ShareLink] | None
    ) -> PageUpdate:
        lib = self._ui.library
        text, choices = "", []
        if shown.grant is not None and shown.access is Access.OWNER:
            links = links if links is not None else await self._library.links_of(shown.grant)
            base = _base_url(request)
            text = (
                "\n".join(f"- {link.kind}: `{base}?s={link.token}`" for link in links)
                or "No share links yet."
            )
            choices = [(f"{link.kind} \u2026{link.token[-6:]}", link.token) for link in links]
        return {lib.links: text, lib.revoke_choice: gr.Dropdown(choices=choices, value=None)}

    async def gallery(self, actor: Actor, query: str = "") -> PageUpdate:
        """ "My conversations", each with the image its chat shows last (stored on its row)."""
        summaries = await self._library.list(actor, query)
        # A thumbnail not made yet is a Pillow resize: in a worker thread, off the event loop.
        thumbnails = await asyncio.to_thread(lambda: [self._files.thumbnail(s.thumbnail) for s in summaries])
        items = list(zip(thumbnails, (s.title for s in summaries), strict=True))
        return {self._ui.library.gallery: items, self._ui.library.ids: [s.id for s in summaries]}

    # --- page ----------------------------------------------------------------------------

    async def opened(self, actor: Actor, conversation_id: str) -> Shown:
        """What a page shows with ``conversation_id`` open (none for ""): AccessError and the like if refused."""
        if not conversation_id:
            return Shown(actor)
        return Shown.of(actor, await self._service.open(actor, conversation_id))

    async def on_load(
        self, owner_id: str, request: gr.Request, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        """Open what the URL names: ?c=<id> (your own) or ?s=<token> (shared with you)."""
        browser, owner_id = owner_id, page_owner(owner_id, profile)
        token = (request.query_params.get("s") or "").strip() or None
        conversation_id = (request.query_params.get("c") or "").strip()
        actor = Actor(owner_id, token)
        status = self._config.key_status()
        shown = Shown(actor)
        try:
            if token:
                conversation_id = (await asyncio.to_thread(self._service.gate.shared, token)).conversation_id
            if conversation_id:
                shown = Shown.of(actor, await self._service.open(actor, conversation_id))
        except RetouchError as exc:
            log_refusal("load", exc)
            status = exc.user_message()
            if owner_id != browser and not token and await self._browser_owns(browser, conversation_id):
                status = STILL_THE_BROWSERS  # open before signing in: the question says what to do
            shown = Shown(Actor(owner_id))
        return await self.view(shown, status=status, request=request)

    async def _browser_owns(self, browser: str, conversation_id: str) -> bool:
        try:
            return (await self._service.open(Actor(browser), conversation_id)).grant.access is Access.OWNER
        except RetouchError:
            return False

    async def on_new(self, owner: str, profile: gr.OAuthProfile | None = None) -> PageUpdate:
        """An empty page; "My conversations" has not changed."""
        owner = page_owner(owner, profile)
        view = await self.view(
            Shown(Actor(owner)), Show.ALL & ~Show.GALLERY, status=self._config.key_status()
        )
        return {**view, self._ui.box: gr.MultimodalTextbox(value=None, visible=True)}

    async def on_open(
        self,
        owner: str,
        ids: object,
        evt: gr.SelectData,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """A click in "My conversations" (which stays as it is). ``ids`` comes back from the page,
        so it is whatever a visitor sent: only a string at the clicked index is tried, and
        ``open`` checks the visitor's access to it like any other id."""
        owner = page_owner(owner, profile)
        actor = Actor(owner)
        try:
            picked = ids[evt.index] if isinstance(ids, list) else None
            if not isinstance(picked, str):
                raise IndexError(evt.index)
            opened = await self._service.open(actor, picked)
        except (RetouchError, IndexError, TypeError) as exc:
            message = exc.user_message() if isinstance(exc, RetouchError) else "That conversation is gone."
            return await self.view(Shown(actor), status=message, request=request)
        return await self.view(Shown.of(actor, opened), Show.ALL & ~Show.GALLERY, request=request)

    def on_model_change(self, model_id: str) -> tuple[gr.Dropdown, gr.Dropdown]:
        ratios, sizes = model_choices(model_id)
        return gr.Dropdown(choices=ratios, value="auto"), gr.Dropdown(choices=sizes, value="auto")

    # --- turns ---------------------------------------------------------------------------

    @staticmethod
    def on_not_taken(chat: list[Any]) -> list[Any]:
        """The message failed before its handler ran (Gradio's queue was full: a 503 at the join),
        so nothing of it is stored and the box still holds it: say so in the chat, for this moment
        only. Not queued, so a full queue cannot refuse it too."""
        return [*(chat or []), {"role": "assistant", "content": f"\u26a0\ufe0f {NOT_TAKEN}"}]

    async def on_submit(
        self,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        message: dict[str, Any] | None,
        conversation_id: str,
        share_token: str,
        owner: str,
        painter: dict[str, Any] | None,
        gemini_key: str,
        openai_key: str,
        **options: Any,
    ) -> AsyncIterator[PageUpdate]:
        """Yields the page twice: with the message stored (and a "working" bubble), then answered.

        Inputs come by name (``inputs_kwargs``), the options under the names parse_options takes.
        """
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None, client_address(request, self._config.proxies))
        keys = visitor_keys(gemini_key, openai_key)
        message = message or {}
        try:
            parsed = self._options(options)
            attachments = await asyncio.to_thread(
                read_uploads, message.get("files") or [], max_bytes=self._config.max_upload_bytes
            )
            painted = await asyncio.to_thread(_painted, painter)
            steps = self._service.send(
                actor,
                conversation_id or None,
                message.get("text") or "",
                attachments,
                options=parsed,
                painted=painted,
                keys=keys,
            )
            # Stored; a new conversation also gets the owner's tools (no links yet).
            show = Show.CHAT if conversation_id else Show.CHAT | Show.ACCESS | Show.LINKS
            cleared: PageUpdate = {self._ui.box: gr.MultimodalTextbox(value=None, visible=True)}
            async for update in self._turn_views(actor, steps, parsed, request, show, cleared):
                yield update
        except RetouchError as exc:
            yield {**await self.refusal(actor, conversation_id, exc), self._ui.stop: _stop_button(False)}

    async def on_retry(
        self,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
        conversation_id: str,
        share_token: str,
        owner: str,
        gemini_key: str,
        openai_key: str,
        **options: Any,
    ) -> AsyncIterator[PageUpdate]:
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None, client_address(request, self._config.proxies))
        try:
            parsed = self._options(options)
            keys = visitor_keys(gemini_key, openai_key)
            steps = self._service.retry(actor, conversation_id, options=parsed, keys=keys)
            async for update in self._turn_views(actor, steps, parsed, request, Show.CHAT, {}):
                yield update
        except RetouchError as exc:
            yield {**await self.refusal(actor, conversation_id, exc), self._ui.stop: _stop_button(False)}

    # --- a running turn: its progress, and Stop -----------------------------------------------

    async def _turn_views(
        self,
        actor: Actor,
        steps: AsyncIterator[Step],
        options: GenerationOptions,
        request: gr.Request,
        show: Show,
        extra: PageUpdate,
    ) -> AsyncIterator[PageUpdate]:
        """The page at each step of a turn: the message stored (``show``, plus ``extra``; Stop shown),
        then each progress snapshot (the chat only: the stored messages as first rendered and the
        pending bubble, no database read, no gallery), then the answer (Stop hidden)."""
        working = _working_model(options)
        stored: list[Any] | None = None  # the chat's messages before the pending bubble
        async for step in steps:
            if stored is None:
                view = await self.view(Shown.of(actor, step), show, working_model=working, links=())
                stored = view[self._ui.chatbot][:-1]  # the last one is the pending bubble, redrawn here
                chat = await self._pending_chat(stored, step, working)
                yield {
                    **view,
                    **extra,
                    self._ui.chatbot: chat,
                    self._ui.stop: _stop_button(True),
                    # This page follows its own turn: it does not watch meanwhile (the answer's view ticks again).
                    self._ui.timer: gr.Timer(active=False),
                }
            elif step.since is not None:
                yield {self._ui.chatbot: await self._pending_chat(stored, step, working)}
            else:
                yield {
                    **await self.view(Shown.of(actor, step), ANSWERED, request=request),
                    self._ui.stop: _stop_button(False),
                }

    # --- watching: a share link's page, the owner's other tab ------------------------------------

    async def on_tick(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        seen: object,
        changed: object,
        progressed: object,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate | SkipAll:
        """Whether the open conversation changed since this page showed it (``seen``, its stamp as
        a key): one SELECT, nothing rendered. A change gives ``changed`` (the conversation) or
        ``progressed`` (only its running turn's progress) a new value, and their change events
        render the page. Unchanged, the three boxes get back what the page sent, so no change
        event runs: not ``gr.skip()``, for which Gradio rebuilds each skipped component's config
        (~1 ms each). A refusal (deleted, link revoked) changes ``changed`` too: its render says
        why. What the page sends is only compared: garbage is a change, one render more."""
        if not conversation_id:
            return _unchanged()
        boxes: tuple[Block, ...] = (self._ui.seen, self._ui.changed, self._ui.progressed)
        last, *triggers = (_box(value) for value in (seen, changed, progressed))
        try:
            stamp = await self._service.stamp(
                Actor(page_owner(owner, profile), share_token or None), conversation_id
            )
        except RetouchError:
            refused: PageUpdate = {self._ui.changed: f"refused {time.monotonic()}"}
            return refused
        key = _stamp_key(stamp)
        if key != last:
            only_progress = stamp.answering and last.split("|")[0] == key.split("|")[0]
            triggers[1 if only_progress else 0] = key
        return dict(zip(boxes, (key, *triggers), strict=True))

    async def on_changed(
        self, owner: str, conversation_id: str, share_token: str, profile: gr.OAuthProfile | None = None
    ) -> PageUpdate:
        """The watched conversation changed: its chat and versions, with the working bubble while a
        turn of it runs (its progress where it runs in this process). A refusal says why once and
        stops watching."""
        actor = Actor(page_owner(owner, profile), share_token or None)
        try:
            step = await self._service.watch(actor, conversation_id)
        except RetouchError as exc:
            log_refusal("watch", exc)
            return {self._ui.status: exc.user_message(), self._ui.timer: gr.Timer(active=False)}
        view = await self.view(Shown.of(actor, step), Show.CHAT | Show.VERSIONS)
        if _pending(
            step
        ):  # the last message is the plain pending bubble: redrawn with the progress and time so far
            view[self._ui.chatbot] = await self._pending_chat(
                view[self._ui.chatbot][:-1], step, WATCHED_MODEL
            )
        # Never which conversation the page has open, nor its status line or owner: a render that
        # lands after the visitor opened another conversation (a fork, a pick in the list) is
        # drawn over by the next tick, which sees the new one's stamp, instead of reopening this one.
        return {block: value for block, value in view.items() if block in self.watch_outputs}

    async def on_progressed(
        self, owner: str, conversation_id: str, share_token: str, profile: gr.OAuthProfile | None = None
    ) -> list[Any] | SkipAll:
        """Only the running turn's progress moved: the chat alone, so a visitor's painting or
        typing is never reset by it (the next tick sees the answer)."""
        try:
            step = await self._service.watch(
                Actor(page_owner(owner, profile), share_token or None), conversation_id
            )
        except RetouchError:
            return _unchanged()  # the next tick finds out and says why
        if not _pending(step):
            return _unchanged()
        chat = await asyncio.to_thread(
            to_messages, step.conversation, self._files.image, working_model=WATCHED_MODEL
        )
        return await self._pending_chat(chat[:-1], step, WATCHED_MODEL)

    async def _pending_chat(self, stored: list[Any], step: Step, working_model: str) -> list[Any]:
        """The stored messages and the running calls' pending bubble; each call's newest draft staged in a worker thread."""
        newest = [p.drafts[-1] if p is not None and p.drafts else None for p in step.progress]
        drafts = await asyncio.to_thread(lambda: [self._files.draft(d) if d else None for d in newest])
        elapsed = time.monotonic() - step.since if step.since is not None else 0.0
        bubble = turn_progress_messages(
            step.progress, working_model=working_model, elapsed_s=elapsed, draft_paths=drafts
        )
        return [*stored, *bubble]

    async def on_stop(
        self,
        request: gr.Request,
        conversation_id: str,
        share_token: str,
        owner: str,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """Stop the open conversation's turn on this replica; the chat then shows its stopped answer.

        Gradio's ``cancels=`` is not used: the service's ``stop`` ends the turn for everyone
        following it (this page's /send stream ends with the stopped answer, which it renders like
        any answer), checks that the visitor may write, and waits until the stopped turn is stored.
        Cancelling the page's event instead would end its stream before that answer arrived (the
        pending bubble would stay until something re-rendered the chat) and would reach only the
        page that started the turn. Not queued, so a full model queue cannot hold a Stop back.
        """
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None, client_address(request, self._config.proxies))
        try:
            step = await self._service.stop(actor, conversation_id)
        except RetouchError as exc:
            log_refusal("stop", exc)
            return {self._ui.status: exc.user_message(), self._ui.stop: _stop_button(False)}
        return {**await self.view(Shown.of(actor, step), Show.CHAT), self._ui.stop: _stop_button(False)}

    async def refusal(
        self, actor: Actor, conversation_id: str, exc: RetouchError, *, event: str = "turn"
    ) -> PageUpdate:
        """Show why in the chat, for this moment only: nothing of a refused change is stored; the box
        keeps what it holds."""
        log_refusal(event, exc)
        shown, show = Shown(actor), Show.ALL
        if conversation_id:
            try:
                shown, show = (
                    Shown.of(actor, await self._service.open(actor, conversation_id)),
                    Show.CHAT | Show.ACCESS,
                )
            except RetouchError:
                shown = Shown(Actor(actor.owner_id))
        view = await self.view(shown, show)
        notice = {"role": "assistant", "content": f"\u26a0\ufe0f {exc.user_message()}"}
        return {
            **view,
            self._ui.chatbot: [*view[self._ui.chatbot], notice],
            self._ui.box: gr.MultimodalTextbox(),
        }

    async def on_pick(
        self,
        owner: str,
        conversation_id: str,
        share_token: str,
        index: int | None,
        profile: gr.OAuthProfile | None = None,
    ) -> PageUpdate:
        """ "Use this" on a variant: the next edit builds on it (the chat and the versions say which)."""
        owner = page_owner(owner, profile)
        actor = Actor(owner, share_token or None)
        if not isinstance(index, int) or not conversation_id:
            return {self._ui.status: ""}
        try:
            step = await self._service.pick(actor, conversation_id, index)
        except RetouchError as exc:
            log_refusal("pick", exc)
            try:  # the chat as it is, with why; a visitor who may not even read it gets the why only
                opened = await self._service.open(actor, conversation_id)
            except RetouchError:
                return {self._ui.status: exc.user_message()}
            return await self.view(Shown.of(actor, opened), Show.CHAT, status=exc.user_message())
        return await self.view(Shown.of(actor, step), Show.CHAT | Show.VERSIONS)

    def on_cost(self, **options: Any) -> str:
        """What the next send could cost with these options, at most (every variant's worst case)."""
        try:
            parsed = self._options(options)
        except RetouchError as exc:
            return exc.user_message()
        return estimate(self._service.worst_case(parsed), parsed.variants)

    # --- helpers -------------------------------------------------------------------------

    def _options(self, values: Mapping[str, Any]) -> GenerationOptions:
        return parse_options(
            values,
            default_model=self._config.default_model,
            default_openai_model=self._config.default_openai_model,
        )


def _stop_button(visible: bool) -> gr.Button:
    """The Stop button: shown while a turn of this page runs, hidden otherwise."""
    return gr.Button(visible=visible)


#: What a page that did not start a running turn calls its model until the call names one.
WATCHED_MODEL = "the chosen model"

#: An answered turn changed the chat, its versions and its place in "My conversations".
ANSWERED = Show.CHAT | Show.VERSIONS | Show.GALLERY


def visitor_keys(gemini_key: str | None, openai_key: str | None) -> dict[str, SecretStr]:
    """A visitor's own keys, for their calls only: never stored, logged or shown again."""
    keys = {"gemini": (gemini_key or "").strip(), "openai": (openai_key or "").strip()}
    return {name: SecretStr(key) for name, key in keys.items() if key}


def client_address(request: gr.Request | None, proxies: TrustedProxies) -> str:
    """Who to count for rate limits: the direct peer, or what a trusted proxy says it forwarded.

    Every ``X-Forwarded-For`` line counts, in order: HAProxy's ``option forwardfor`` adds a line
    of its own after the client's instead of extending it, and reading the first line only would
    believe the client's.
    """
    if request is None:
        return ""
    client = getattr(request, "client", None)
    peer = getattr(client, "host", "") or ""
    headers = request.headers
    lines = (
        headers.getlist("x-forwarded-for")
        if hasattr(headers, "getlist")
        else [headers.get("x-forwarded-for")]
    )
    forwarded = ", ".join(line for line in lines if line)
    return proxies.client_address(peer, forwarded or None)


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


def _stamp_key(stamp: Stamp) -> str:
    """A stamp as a hidden box's value: the stored conversation's part, then the progress seen."""
    turns = f"{stamp.conversation_id} {stamp.turn_count} {stamp.revision} {int(stamp.answering)}"
    return f"{turns}|{stamp.shown}"


def _box(value: object) -> str:
    """A hidden box's value as the page sent it: a short string, or empty."""
    return value if isinstance(value, str) and len(value) <= STAMP_KEY_MAX_CHARS else ""


#: Longer than any stamp key (an id of at most 32 characters and four numbers).
STAMP_KEY_MAX_CHARS = 120


def _unchanged() -> SkipAll:
    """``gr.skip()``, returned alone: no output of the event changes."""
    return dict(gr.skip())


def _pending(step: Step) -> bool:
    """Whether the step is a turn being answered (its last message unanswered)."""
    turns = step.conversation.turns
    return step.answering and bool(turns) and turns[-1].role is Role.USER


def _working_model(options: GenerationOptions) -> str:
    return (options.openai.model or "OpenAI") if options.route is Route.OPENAI else options.model


def _painted(painter: dict[str, Any] | None) -> bytes | None:
    """The brush strokes of the painter as a white-on-black PNG, or None if nothing was painted.

    The canvas is the background's size, or the strokes' when the background was a file of
    another replica (chat/ui/layout.py ``_without_files_of_other_replicas``)."""
    layers = list(painter.get("layers") or []) if painter else []
    background = painter.get("background") if painter else None
    if background is None and not layers:
        return None
    region = painted_region(layers, (background or layers[0]).size)
    return region_png(region) if region is not None else None
